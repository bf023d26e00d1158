#include "scheduler/shard_map.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace sparta {

ShardMap::ShardMap(int num_shards, int servers, int replication_factor)
    : replication_factor_(replication_factor), owner_(num_shards), replicas_(num_shards) {
  for (int s = 0; s < num_shards; ++s) {
    owner_[s] = s % servers;
    for (int r = 1; r < replication_factor; ++r) replicas_[s].push_back((s + r) % servers);
  }
}

absl::Status ShardMap::RemoveServer(uint32_t dead,
                                    const std::function<uint64_t(uint32_t rank, uint32_t shard)>& applied) {
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    auto& copies = replicas_[s];
    copies.erase(std::remove(copies.begin(), copies.end(), dead), copies.end());
    if (owner_[s] != dead) continue;
    if (copies.empty()) {
      return absl::UnavailableError(absl::StrCat("shard ", s, " had its last copy on server-", dead,
                                                 " (storage.replication_factor is ", replication_factor_, ")"));
    }
    // The most up-to-date replica leads. With ack "all" every live replica
    // holds every acknowledged update; this matters for what was in flight.
    auto best = std::max_element(copies.begin(), copies.end(),
                                 [&](uint32_t a, uint32_t b) { return applied(a, s) < applied(b, s); });
    owner_[s] = *best;
    copies.erase(best);
  }
  return absl::OkStatus();
}

int ShardMap::RestoreReplication(const std::vector<uint32_t>& live) {
  std::map<uint32_t, int> load;  // shards held by each live server
  for (uint32_t rank : live) load[rank] = 0;
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    ++load[owner_[s]];
    for (uint32_t r : replicas_[s]) ++load[r];
  }
  const size_t wanted = std::min<size_t>(replication_factor_, live.size()) - 1;
  int added = 0;
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    while (replicas_[s].size() < wanted) {
      uint32_t pick = UINT32_MAX;
      for (const auto& [rank, held] : load) {
        const bool holds = rank == owner_[s] ||
                           std::find(replicas_[s].begin(), replicas_[s].end(), rank) != replicas_[s].end();
        if (!holds && (pick == UINT32_MAX || held < load[pick])) pick = rank;
      }
      if (pick == UINT32_MAX) break;
      replicas_[s].push_back(pick);
      ++load[pick];
      ++added;
    }
  }
  return added;
}

int ShardMap::AddServer(uint32_t rank, const std::vector<uint32_t>& live) {
  int moved = RestoreReplication(live);
  std::map<uint32_t, int> load;
  for (uint32_t r : live) load[r] = 0;
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    ++load[owner_[s]];
    for (uint32_t r : replicas_[s]) ++load[r];
  }
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    for (uint32_t& r : replicas_[s]) {
      if (r == rank || owner_[s] == rank || load[r] <= load[rank] + 1) continue;
      if (std::find(replicas_[s].begin(), replicas_[s].end(), rank) != replicas_[s].end()) break;
      --load[r];
      r = rank;
      ++load[rank];
      ++moved;
      break;
    }
  }
  return moved;
}

void ShardMap::FromView(const pb::ClusterView& view) {
  owner_.assign(view.shard_owner().begin(), view.shard_owner().end());
  replicas_.assign(owner_.size(), {});
  for (int s = 0; s < view.replicas_size() && s < static_cast<int>(owner_.size()); ++s) {
    replicas_[s].assign(view.replicas(s).ranks().begin(), view.replicas(s).ranks().end());
  }
}

void ShardMap::ToView(pb::ClusterView* view) const {
  view->clear_shard_owner();
  view->clear_replicas();
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    view->add_shard_owner(owner_[s]);
    auto* copies = view->add_replicas();
    for (uint32_t r : replicas_[s]) copies->add_ranks(r);
  }
}

}  // namespace sparta
