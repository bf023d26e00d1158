#include "server/view_change.h"

namespace sparta {

ViewChange PlanViewChange(const ShardView& before, const pb::ClusterView& view, uint32_t me) {
  ViewChange change;
  for (const auto& node : view.nodes()) change.listed |= node.role() == pb::SERVER && static_cast<uint32_t>(node.rank()) == me;
  if (!change.listed) return change;
  const ShardView after(view);
  // A first view (before.num_shards() == 0) holds nothing before it.
  auto held_before = [&](uint32_t shard, uint32_t rank) {
    return shard < before.num_shards() && before.Holds(shard, rank);
  };
  for (uint32_t s = 0; s < after.num_shards(); ++s) {
    if (after.owner(s) == me) {
      change.promoted += !(s < before.num_shards() && before.owner(s) == me);
      for (uint32_t r : after.replicas(s)) {
        if (!held_before(s, r)) change.snapshots.emplace_back(s, r);
      }
    }
    if (after.IsReplica(s, me) && !held_before(s, me)) change.incomplete.push_back(s);
    if (held_before(s, me) && !after.Holds(s, me)) change.dropped.push_back(s);
  }
  return change;
}

}  // namespace sparta
