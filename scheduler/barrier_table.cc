#include "scheduler/barrier_table.h"

namespace sparta {

pb::Header BarrierTable::ReleaseMessage(pb::Role role, const std::string& name, const Release& release) {
  pb::Header h;
  h.set_type(pb::BARRIER_RELEASE);
  h.set_barrier(name);
  if (role == pb::WORKER) h.set_lead_rank(release.lead_rank);
  h.set_seq(release.round);  // a node takes each round's release once
  return h;
}

BarrierTable::Arrival BarrierTable::Arrive(pb::Role role, const std::string& name, uint32_t id, bool resent,
                                           uint64_t round, pb::Header* release) {
  const Key key{role, name};
  if (auto last = released_.find(key); last != released_.end()) {
    Release& r = last->second;
    const bool passed = r.passed.count(id) > 0;
    const bool late = !passed && !waiting_.count(key);
    const bool lost = passed && resent && round < r.round;
    if (late || lost) {
      // Awaiting the others would hang the job: they are past it.
      r.passed.insert(id);
      *release = ReleaseMessage(role, name, r);
      return late ? Arrival::kLate : Arrival::kReleaseLost;
    }
  }
  waiting_[key].insert(id);
  return Arrival::kWaits;
}

std::optional<pb::Header> BarrierTable::ReleaseIfComplete(pb::Role role, const std::string& name, int size,
                                                          int lead_rank,
                                                          const std::function<bool(uint32_t)>& is_live) {
  const Key key{role, name};
  auto it = waiting_.find(key);
  if (it == waiting_.end()) return std::nullopt;
  int arrived = 0;
  for (uint32_t id : it->second) arrived += is_live(id);
  if (arrived < size) return std::nullopt;
  Release& last = released_[key];
  last = Release{std::move(it->second), lead_rank, last.round + 1};
  waiting_.erase(it);
  return ReleaseMessage(role, name, last);
}

std::vector<std::string> BarrierTable::Open(pb::Role role) const {
  std::vector<std::string> names;
  for (const auto& [key, ids] : waiting_) {
    if (key.first == role) names.push_back(key.second);
  }
  return names;
}

void BarrierTable::Save(pb::SchedulerState* state) const {
  for (const auto& [key, release] : released_) {
    pb::BarrierRelease* r = state->add_releases();
    r->set_role(key.first);
    r->set_name(key.second);
    r->mutable_passed()->Add(release.passed.begin(), release.passed.end());
    r->set_lead_rank(release.lead_rank);
    r->set_round(release.round);
  }
}

void BarrierTable::Load(const pb::SchedulerState& state) {
  released_.clear();
  for (const pb::BarrierRelease& r : state.releases()) {
    released_[{r.role(), r.name()}] =
        Release{std::set<uint32_t>(r.passed().begin(), r.passed().end()), r.lead_rank(), r.round()};
  }
}

}  // namespace sparta
