#include "scheduler/shard_map.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"

namespace sparta {

ShardMap::ShardMap(int num_shards, int servers, int replication_factor)
    : replication_factor_(replication_factor), owner_(num_shards), replicas_(num_shards) {
  for (int s = 0; s < num_shards; ++s) {
    owner_[s] = s % servers;
    for (int r = 1; r < replication_factor; ++r) replicas_[s].push_back((s + r) % servers);
  }
}

std::vector<uint32_t> ShardMap::RemoveServer(
    uint32_t dead, const std::function<uint64_t(uint32_t rank, uint32_t shard)>& applied) {
  std::vector<uint32_t> lost;
  // A move from or to the dead server is over: a target stays a replica.
  for (auto it = moves_.begin(); it != moves_.end();) {
    it = it->second.from == dead || it->second.to == dead ? moves_.erase(it) : std::next(it);
  }
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    auto& copies = replicas_[s];
    copies.erase(std::remove(copies.begin(), copies.end(), dead), copies.end());
    catching_up_.erase({s, dead});
    if (owner_[s] != dead) continue;
    // The most up-to-date whole replica leads. With ack "all" every live
    // replica holds every acknowledged update; this matters for what was
    // in flight.
    uint32_t best = UINT32_MAX;
    for (uint32_t r : copies) {
      if (catching_up_.count({s, r})) continue;
      if (best == UINT32_MAX || applied(r, s) > applied(best, s)) best = r;
    }
    if (best == UINT32_MAX) {
      lost.push_back(s);
      continue;
    }
    owner_[s] = best;
    copies.erase(std::find(copies.begin(), copies.end(), best));
  }
  return lost;
}

int ShardMap::OnServerReport(uint32_t rank, uint64_t view_epoch, const std::vector<uint32_t>& incomplete) {
  int made_whole = 0;
  for (auto it = catching_up_.begin(); it != catching_up_.end();) {
    const auto [shard, replica] = it->first;
    // A report of an older view may predate the placement: it says nothing.
    if (replica == rank && it->second <= view_epoch &&
        std::find(incomplete.begin(), incomplete.end(), shard) == incomplete.end()) {
      it = catching_up_.erase(it);
      ++made_whole;
    } else {
      ++it;
    }
  }
  return made_whole;
}

std::map<uint32_t, int> ShardMap::LoadOf(const std::vector<uint32_t>& live) const {
  std::map<uint32_t, int> load;
  for (uint32_t rank : live) load[rank] = 0;
  // Only the servers in `live` are candidates: a server being drained
  // holds copies, and must not be given more.
  auto count = [&](uint32_t rank) {
    if (auto it = load.find(rank); it != load.end()) ++it->second;
  };
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    count(owner_[s]);
    for (uint32_t r : replicas_[s]) count(r);
  }
  return load;
}

int ShardMap::RestoreReplication(const std::vector<uint32_t>& live, uint64_t epoch) {
  std::map<uint32_t, int> load = LoadOf(live);  // shards held by each live server
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
      CatchUp(s, pick, epoch);
      ++load[pick];
      ++added;
    }
  }
  return added;
}

int ShardMap::AddServer(uint32_t rank, const std::vector<uint32_t>& live, uint64_t epoch) {
  int moved = RestoreReplication(live, epoch);
  std::map<uint32_t, int> load = LoadOf(live);
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    // A moving shard keeps its copies until the move ends: its target
    // replaced here would be handed a shard it does not hold.
    if (moves_.count(s)) continue;
    for (uint32_t& r : replicas_[s]) {
      if (r == rank || owner_[s] == rank || load[r] <= load[rank] + 1) continue;
      if (std::find(replicas_[s].begin(), replicas_[s].end(), rank) != replicas_[s].end()) break;
      --load[r];
      catching_up_.erase({s, r});
      r = rank;
      CatchUp(s, rank, epoch);
      ++load[rank];
      ++moved;
      break;
    }
  }
  return moved;
}

int ShardMap::held_by(uint32_t rank) const {
  int held = 0;
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    held += owner_[s] == rank;
    held += std::count(replicas_[s].begin(), replicas_[s].end(), rank);
  }
  return held;
}

int ShardMap::BeginDrain(uint32_t from, const std::vector<uint32_t>& to, uint64_t epoch) {
  std::map<uint32_t, int> load;
  for (uint32_t r : to) load[r] = held_by(r);
  int moving = 0;
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    if (!Holds(s, from) || moves_.count(s)) continue;
    uint32_t pick = UINT32_MAX;
    for (const auto& [rank, held] : load) {
      if (rank != from && !Holds(s, rank) && (pick == UINT32_MAX || held < load[pick])) pick = rank;
    }
    if (pick == UINT32_MAX || !BeginMove(s, from, pick, epoch)) continue;
    ++load[pick];
    ++moving;
  }
  return moving;
}

bool ShardMap::Holds(uint32_t shard, uint32_t rank) const {
  return owner_[shard] == rank || std::count(replicas_[shard].begin(), replicas_[shard].end(), rank) > 0;
}

bool ShardMap::BeginMove(uint32_t shard, uint32_t from, uint32_t to, uint64_t epoch) {
  if (shard >= owner_.size() || moves_.count(shard) || !Holds(shard, from) || Holds(shard, to)) return false;
  replicas_[shard].push_back(to);
  CatchUp(shard, to, epoch);
  moves_[shard] = Move{from, to};
  return true;
}

int ShardMap::AdvanceMoves(uint64_t epoch) {
  int changed = 0;
  // Hand-offs go in batches, one per server the shards move from, once all
  // of its moving shards are whole at their targets, and not while another
  // batch hands off. A worker's request that touches a handing-off shard
  // waits until the switch, and a worker's batch touches nearly every
  // shard: shards marked one after another as they became whole made one
  // pause after another, and one long pause where they overlapped.
  const bool handing_off_now = handing_off() > 0;
  std::set<uint32_t> not_ready;  // servers whose moving primaries are not all whole yet
  for (const auto& [s, move] : moves_) {
    if (owner_[s] == move.from && catching_up_.count({s, move.to})) not_ready.insert(move.from);
  }
  for (auto it = moves_.begin(); it != moves_.end();) {
    const uint32_t s = it->first;
    Move& move = it->second;
    auto& copies = replicas_[s];
    if (catching_up_.count({s, move.to})) {
      ++it;
      continue;
    }
    if (owner_[s] != move.from) {
      // A replica copy: the whole target takes its place at once.
      copies.erase(std::remove(copies.begin(), copies.end(), move.from), copies.end());
    } else if (move.handoff_epoch == 0) {
      if (handing_off_now || not_ready.count(move.from)) {
        ++it;
        continue;
      }
      // The primary parks the shard's requests until what it admitted is
      // applied everywhere (SHARDS_HANDED_OFF): nothing in flight crosses
      // the switch, so nothing is lost or applied twice.
      move.handoff_epoch = epoch;
      ++changed;
      ++it;
      continue;
    } else if (!move.handed_off) {
      ++it;
      continue;
    } else {
      owner_[s] = move.to;
      copies.erase(std::remove(copies.begin(), copies.end(), move.to), copies.end());
    }
    it = moves_.erase(it);
    ++changed;
  }
  return changed;
}

size_t ShardMap::handing_off() const {
  size_t n = 0;
  for (const auto& [shard, move] : moves_) n += move.handoff_epoch != 0;
  return n;
}

int ShardMap::OnHandedOff(uint32_t rank, uint64_t view_epoch, const std::vector<uint32_t>& shards) {
  int handed = 0;
  for (uint32_t s : shards) {
    auto it = moves_.find(s);
    if (it == moves_.end() || it->second.from != rank || owner_[s] != rank) continue;
    // A report from before the view that marked the shard says nothing.
    if (it->second.handoff_epoch == 0 || view_epoch < it->second.handoff_epoch || it->second.handed_off) continue;
    it->second.handed_off = true;
    ++handed;
  }
  return handed;
}

void ShardMap::FromView(const pb::ClusterView& view) {
  owner_.assign(view.shard_owner().begin(), view.shard_owner().end());
  replicas_.assign(owner_.size(), {});
  for (int s = 0; s < view.replicas_size() && s < static_cast<int>(owner_.size()); ++s) {
    const pb::ShardReplicas& copies = view.replicas(s);
    replicas_[s].assign(copies.ranks().begin(), copies.ranks().end());
    for (int i = 0; i < copies.catching_up_from_size() && i < copies.ranks_size(); ++i) {
      if (copies.catching_up_from(i) != 0) CatchUp(s, copies.ranks(i), copies.catching_up_from(i));
    }
  }
}

void ShardMap::SaveMoves(google::protobuf::RepeatedPtrField<pb::ShardMove>* out) const {
  out->Clear();
  for (const auto& [shard, move] : moves_) {
    pb::ShardMove* saved = out->Add();
    saved->set_shard(shard);
    saved->set_from(move.from);
    saved->set_to(move.to);
  }
}

int ShardMap::RestoreMoves(const google::protobuf::RepeatedPtrField<pb::ShardMove>& moves) {
  int restored = 0;
  for (const pb::ShardMove& saved : moves) {
    const uint32_t s = saved.shard();
    // The target joined the shard when the move began (BeginMove), so a
    // move that still runs has both servers holding it; one the saved view
    // had already finished, or a failover ended, does not.
    if (s >= owner_.size() || moves_.count(s) || saved.from() == saved.to() || !Holds(s, saved.from()) ||
        !Holds(s, saved.to()) || owner_[s] == saved.to()) {
      continue;
    }
    moves_[s] = Move{saved.from(), saved.to()};
    ++restored;
  }
  return restored;
}

void ShardMap::ToView(pb::ClusterView* view) const {
  view->clear_shard_owner();
  view->clear_replicas();
  for (uint32_t s = 0; s < owner_.size(); ++s) {
    view->add_shard_owner(owner_[s]);
    auto* copies = view->add_replicas();
    auto move = moves_.find(s);
    copies->set_handing_off(move != moves_.end() && move->second.handoff_epoch != 0 && owner_[s] == move->second.from);
    for (uint32_t r : replicas_[s]) {
      copies->add_ranks(r);
      auto it = catching_up_.find({s, r});
      copies->add_catching_up_from(it == catching_up_.end() ? 0 : it->second);
    }
  }
}

}  // namespace sparta
