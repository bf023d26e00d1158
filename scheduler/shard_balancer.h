// PlanRowBalance: which shard copies to move so that the servers hold about
// the same number of rows, not of shards. Used when servers join a running
// job (sparta-server --join, sparta-ctl scale): shards differ in size (hash
// skew, tables that grow unevenly, expiry), so an equal count of shards can
// leave one server with twice the rows of another.
//
// It balances what each server leads first (a primary serves every pull and
// push of its shard, so that is where the traffic goes), then what each
// holds in all (memory). Moves already under way count as done. A copy
// moves only where it brings the pair of servers it moves between closer
// together, by at least 1% of a server's share, so the plan ends.
//
// Stateless; thread-safe.
#ifndef SPARTA_SCHEDULER_SHARD_BALANCER_H_
#define SPARTA_SCHEDULER_SHARD_BALANCER_H_

#include <cstdint>
#include <vector>

#include "scheduler/shard_map.h"

namespace sparta {

struct PlannedMove {
  uint32_t shard = 0;
  uint32_t from = 0;  // the server whose copy moves
  uint32_t to = 0;    // the server that takes it (it holds none of the shard)
  bool operator==(const PlannedMove&) const = default;
};

// `rows[s]`: rows of shard s (as its primary last reported them); `servers`:
// the live servers that may give and take copies (not those draining).
// Each shard weighs its rows plus one, so that shards with no rows yet
// still spread by count. The moves are for ShardMap::BeginMove, in order.
std::vector<PlannedMove> PlanRowBalance(const ShardMap& map, const std::vector<uint64_t>& rows,
                                        const std::vector<uint32_t>& servers);

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_SHARD_BALANCER_H_
