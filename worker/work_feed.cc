#include "worker/work_feed.h"

namespace sparta {

absl::StatusOr<std::optional<WorkFeed::Unit>> WorkFeed::Next() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<uint64_t> held;
    for (const auto& [id, p] : units_) held.push_back(id);
    ask_(held);
  }
  auto granted = await_();
  if (!granted.ok()) return granted.status();
  if (!granted->has_value()) return std::optional<Unit>();
  const pb::WorkRange& r = **granted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    units_[r.id()];
  }
  return std::optional<Unit>(Unit{r.id(), r.epoch(), {r.path(), r.begin(), r.end()}});
}

uint32_t WorkFeed::Emitted(uint64_t unit, uint64_t end_bytes, uint64_t examples) {
  std::lock_guard<std::mutex> lock(mu_);
  Progress& p = units_[unit];
  p.pending.push_back({end_bytes, examples, false});
  return p.first + static_cast<uint32_t>(p.pending.size()) - 1;
}

void WorkFeed::Sealed(uint64_t unit) {
  std::lock_guard<std::mutex> lock(mu_);
  units_[unit].sealed = true;
  if (FinishedLocked(unit)) report_done_(unit);
}

void WorkFeed::Trained(uint64_t unit, uint32_t unit_batch) {
  std::lock_guard<std::mutex> lock(mu_);
  {
    auto it = units_.find(unit);
    if (it == units_.end() || unit_batch < it->second.first) return;
    Progress& p = it->second;
    const size_t i = unit_batch - p.first;
    if (i >= p.pending.size()) return;
    p.pending[i].trained = true;
    // The acknowledged prefix grows only in the unit's order.
    while (!p.pending.empty() && p.pending.front().trained) {
      p.trained_bytes = p.pending.front().end_bytes;
      p.trained_examples += p.pending.front().examples;
      p.pending.pop_front();
      ++p.first;
    }
  }
  if (FinishedLocked(unit)) report_done_(unit);
}

bool WorkFeed::FinishedLocked(uint64_t unit) {
  auto it = units_.find(unit);
  if (it == units_.end() || !it->second.sealed || !it->second.pending.empty()) return false;
  units_.erase(it);
  ++units_done_;
  return true;
}

std::map<uint64_t, pb::UnitProgress> WorkFeed::InProgress() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<uint64_t, pb::UnitProgress> out;
  for (const auto& [id, p] : units_) {
    pb::UnitProgress& u = out[id];
    u.set_trained_bytes(p.trained_bytes);
    u.set_trained_examples(p.trained_examples);
    uint64_t taken = 0;
    for (const Batch& b : p.pending) taken += b.examples;
    u.set_taken_examples(taken);
  }
  return out;
}

uint64_t WorkFeed::units_done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return units_done_;
}

}  // namespace sparta
