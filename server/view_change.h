// ViewChange: what one server must do when the scheduler sends a new cluster
// view, decided without sockets from the view it had and the new one.
//
//   - A view that no longer lists the server means it must stop (a fenced
//     primary, or a server the job let go).
//   - A shard it now leads and had not led is a promotion (failover).
//   - A replica of a shard it leads that did not hold the shard before needs
//     the shard's rows streamed to it (re-replication); until then the
//     replicator holds that replica's forwards.
//   - A shard it now replicates and did not hold before is incomplete until
//     its primary's stream is in.
//   - A stream it is sending stops when the shard is no longer its to lead
//     or the peer no longer replicates it (StreamStillWanted).
//   - A shard it held and holds no more has moved away: its rows are
//     dropped, so that a join frees the memory it was added for.
//
// The server applies the plan in that order: the plan is computed before
// the new view is adopted, so that "before" is still at hand. A plain value;
// the functions are pure and thread-safe.
#ifndef SPARTA_SERVER_VIEW_CHANGE_H_
#define SPARTA_SERVER_VIEW_CHANGE_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "common/shard_view.h"
#include "sparta.pb.h"

namespace sparta {

struct ViewChange {
  bool listed = false;  // the new view lists this server; if not, nothing else is set
  uint32_t promoted = 0;  // shards this server leads now and did not before
  std::vector<std::pair<uint32_t, uint32_t>> snapshots;  // (shard, replica) to stream, in shard order
  std::vector<uint32_t> incomplete;  // shards this server now replicates and must receive first
  // Shards this server held (led or replicated) and holds no more: their
  // copy moved to another server (a drain, a join), so its rows go.
  std::vector<uint32_t> dropped;
};

// `before`: the view the server had (an empty ShardView at the first view);
// `view`: the new one; `me`: this server's rank.
ViewChange PlanViewChange(const ShardView& before, const pb::ClusterView& view, uint32_t me);

// Whether a stream of `shard` from this server (`me`) to `peer` is still
// wanted under `after`.
inline bool StreamStillWanted(const ShardView& after, uint32_t me, uint32_t peer, uint32_t shard) {
  return after.owner(shard) == me && after.IsReplica(shard, peer);
}

}  // namespace sparta

#endif  // SPARTA_SERVER_VIEW_CHANGE_H_
