#include "common/shard_view.h"

#include <algorithm>
#include <bit>

namespace sparta {

ShardView::ShardView(const pb::ClusterView& view)
    : epoch_(view.epoch()),
      shard_bits_(std::bit_width(static_cast<size_t>(view.shard_owner_size())) - 1),
      owners_(view.shard_owner().begin(), view.shard_owner().end()),
      replicas_(owners_.size()) {
  for (uint32_t owner : owners_) max_rank_ = std::max(max_rank_, owner);
  for (int s = 0; s < view.replicas_size() && s < static_cast<int>(replicas_.size()); ++s) {
    replicas_[s].assign(view.replicas(s).ranks().begin(), view.replicas(s).ranks().end());
    any_replicas_ |= !replicas_[s].empty();
    for (uint32_t r : replicas_[s]) max_rank_ = std::max(max_rank_, r);
    if (view.replicas(s).handing_off()) {
      handing_off_.resize(owners_.size());
      handing_off_[s] = true;
    }
  }
  for (const pb::NodeInfo& node : view.nodes()) {
    if (node.role() != pb::SERVER) continue;
    if (std::find(view.dead_servers().begin(), view.dead_servers().end(), node.rank()) != view.dead_servers().end()) {
      continue;
    }
    servers_.emplace_back(node.id(), node.rank());
  }
}

int64_t ShardView::server_rank(uint32_t id) const {
  for (const auto& [node, rank] : servers_) {
    if (node == id) return rank;
  }
  return -1;
}

bool ShardView::IsReplica(uint32_t shard, uint32_t rank) const {
  const auto& r = replicas_[shard];
  return std::find(r.begin(), r.end(), rank) != r.end();
}

ShardView::Groups ShardView::ByOwner(std::span<const uint64_t> keys) const {
  Groups groups;
  if (keys.empty()) return groups;
  const uint32_t first = owner_of_key(keys[0]);
  size_t i = 1;
  while (i < keys.size() && owner_of_key(keys[i]) == first) ++i;
  if (i == keys.size()) {
    groups.whole_to.push_back(first);
    return groups;
  }
  groups.positions.resize(max_rank_ + 1);
  for (uint32_t k = 0; k < keys.size(); ++k) groups.positions[owner_of_key(keys[k])].push_back(k);
  return groups;
}

ShardView::Groups ShardView::ByReplica(std::span<const uint64_t> keys, const std::vector<uint32_t>* only) const {
  Groups groups;
  if (keys.empty()) return groups;
  if (only != nullptr) {
    groups.positions.resize(max_rank_ + 1);
    for (uint32_t i = 0; i < keys.size(); ++i) {
      const uint32_t shard = shard_of(keys[i]);
      if (std::find(only->begin(), only->end(), shard) == only->end()) continue;
      for (uint32_t r : replicas_[shard]) groups.positions[r].push_back(i);
    }
    return groups;
  }
  // Usually every key's shard has the same replicas (e.g. R = servers, or
  // R = 2 on 2 servers): then nothing needs splitting.
  const std::vector<uint32_t>& first = replicas_[shard_of(keys[0])];
  bool same = true;
  for (size_t i = 1; i < keys.size() && same; ++i) same = replicas_[shard_of(keys[i])] == first;
  if (same) {
    groups.whole_to = first;
    return groups;
  }
  groups.positions.resize(max_rank_ + 1);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    for (uint32_t r : replicas_[shard_of(keys[i])]) groups.positions[r].push_back(i);
  }
  return groups;
}

}  // namespace sparta
