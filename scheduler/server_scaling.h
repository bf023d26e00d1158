// ServerScaling: which servers a running job keeps, and how its shard
// copies move when servers join or leave. It is what `sparta-ctl drain
// server-N` and `sparta-ctl scale --servers N` mean, and what a server that
// joins with --join brings about: the servers being drained (their copies
// move to the servers that stay, and they are let go once they hold none),
// the number of servers wanted, and the moves that even out the rows the
// servers hold (PlanRowBalance).
//
// It decides and changes the shard map; it sends nothing. The caller
// (JobCoordinator) checks that the job is running, publishes the view
// after a change, and tells a server that is let go to exit. Every method
// that starts moves takes the epoch of the next view, in which they begin.
//
// Borrows the job's Membership (read only) and ShardMap (changed), which
// must outlive it. Not thread-safe: the scheduler's one thread calls it.
#ifndef SPARTA_SCHEDULER_SERVER_SCALING_H_
#define SPARTA_SCHEDULER_SERVER_SCALING_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/config.h"
#include "scheduler/membership.h"
#include "scheduler/shard_map.h"

namespace sparta {

// Why a job with storage.ack primary moves no shard between servers.
extern const char kMovesNeedAckAll[];

class ServerScaling {
 public:
  ServerScaling(const Config& config, const Membership* members, ShardMap* shard_map);

  // Servers the job is to run on: cluster.servers, then what scale asked
  // for, raised by servers that joined and lowered by drains.
  int wanted() const { return wanted_; }
  // Node ids of the live servers being drained.
  const std::set<uint32_t>& draining() const { return draining_; }
  bool is_draining(uint32_t node_id) const { return draining_.count(node_id) > 0; }

  // A scheduler that takes over: what the one before had decided.
  void RestoreWanted(int wanted) { wanted_ = wanted; }
  void RestoreDraining(uint32_t node_id) { draining_.insert(node_id); }

  // Live servers not being drained, by rank.
  std::vector<uint32_t> Staying() const;
  // Rows of each shard, as its primary last reported them.
  std::vector<uint64_t> ShardRows() const;

  // sparta-ctl drain server-`rank`: every copy it holds begins to move to
  // the servers that stay, and fewer servers are wanted. Why not, if it
  // cannot be drained (none such, draining already, too few would stay
  // for storage.replication_factor, storage.ack primary).
  absl::Status Drain(int rank, uint64_t epoch);

  // sparta-ctl scale --servers `wanted`.
  struct ScalePlan {
    absl::Status status;     // why not
    bool accepted = false;   // the servers wanted changed (even if a drain then failed)
    int drains_begun = 0;    // servers whose drain began: the shard map changed
    std::string what;        // what happens next, for the operator
    uint32_t to_start = 0;   // servers the operator (or launcher) starts with --join
  };
  // More servers: they are awaited. Fewer: the highest ranks are drained
  // (the newest hold the least history).
  ScalePlan Scale(uint32_t wanted, uint64_t epoch);

  // A server joined the running job (--join): first the copies a dead
  // server left short are placed, then copies move until rows balance.
  struct Joined {
    int placed = 0;  // replicas placed to restore the replication factor
    int moving = 0;  // copies that began to move
  };
  Joined OnServerJoined(uint64_t epoch);

  // Copies of drained servers that are not moving (their move's target
  // died) begin to move again, to the servers that stay. How many did.
  int Redrain(uint64_t epoch);

  // Moves whose target is whole advance (ShardMap::AdvanceMoves), and the
  // live drained servers that hold no copy any more are named, to be let
  // go: off the view, then told to exit (they are not lost: nothing fails
  // over). The caller marks them dead.
  struct Advanced {
    int switched = 0;                  // moves that advanced
    std::vector<std::string> leaving;  // routing ids of the drained servers to let go
  };
  Advanced AdvanceMoves(uint64_t epoch);

 private:
  // Starts draining server `rank`; why not, if it cannot.
  absl::Status BeginDrain(int rank, uint64_t epoch);
  // Moves shard copies to even out the rows the staying servers hold.
  int BalanceRows(uint64_t epoch);

  const Config& config_;
  const Membership* const members_;
  ShardMap* const shard_map_;
  int wanted_;
  std::set<uint32_t> draining_;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_SERVER_SCALING_H_
