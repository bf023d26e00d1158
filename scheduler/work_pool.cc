#include "scheduler/work_pool.h"

#include <algorithm>

namespace sparta {

void WorkPool::Add(uint32_t epoch, const std::string& path, uint64_t begin, uint64_t end) {
  pending_.push_back({next_id_++, epoch, {path, begin, end}});
}

void WorkPool::AddFile(uint32_t epoch, const InputFile& file, uint64_t split_size) {
  files_seen_.insert(file.path);
  const uint64_t step = split_size == 0 ? file.size : split_size;
  for (uint64_t begin = 0; begin < file.size; begin += step) Add(epoch, file.path, begin, std::min(file.size, begin + step));
}

absl::StatusOr<WorkPool> WorkPool::Cut(const std::vector<InputFile>& files, uint64_t split_size, uint32_t epochs) {
  if (epochs == 0) return absl::InvalidArgumentError("data.epochs must be at least 1");
  WorkPool pool;
  for (uint32_t epoch = 0; epoch < epochs; ++epoch) {
    for (const InputFile& file : files) pool.AddFile(epoch, file, split_size);
  }
  return pool;
}

std::vector<WorkPool::InputFile> WorkPool::AddArrived(const std::vector<InputFile>& files, uint64_t split_size) {
  std::vector<InputFile> added;
  for (const InputFile& file : files) {
    if (files_seen_.count(file.path)) continue;
    AddFile(0, file, split_size);
    added.push_back(file);
  }
  return added;
}

WorkPool WorkPool::Restore(const pb::WorkProgress& progress) {
  WorkPool pool;
  pool.files_seen_.insert(progress.files_seen().begin(), progress.files_seen().end());
  for (const pb::WorkRange& r : progress.remaining()) {
    if (r.begin() < r.end()) pool.Add(r.epoch(), r.path(), r.begin(), r.end());
  }
  return pool;
}

namespace {

void ToRange(const WorkPool::Unit& unit, pb::WorkRange* r) {
  r->set_id(unit.id);
  r->set_epoch(unit.epoch);
  r->set_path(unit.range.path);
  r->set_begin(unit.range.begin);
  r->set_end(unit.range.end);
}

WorkPool::Unit FromRange(const pb::WorkRange& r) { return {r.id(), r.epoch(), {r.path(), r.begin(), r.end()}}; }

}  // namespace

void WorkPool::ToState(pb::WorkPoolState* state) const {
  state->clear_pending();
  state->clear_in_flight();
  for (const Unit& unit : pending_) ToRange(unit, state->add_pending());
  for (const auto& [id, held] : in_flight_) {
    pb::WorkRange* r = state->add_in_flight();
    ToRange(held.unit, r);
    r->set_worker(held.worker);
  }
  state->set_next_id(next_id_);
  state->clear_files_seen();
  for (const std::string& path : files_seen_) state->add_files_seen(path);
  state->set_following(following_);
}

WorkPool WorkPool::FromState(const pb::WorkPoolState& state) {
  WorkPool pool;
  for (const pb::WorkRange& r : state.pending()) pool.pending_.push_back(FromRange(r));
  for (const pb::WorkRange& r : state.in_flight()) pool.in_flight_[r.id()] = {r.worker(), FromRange(r)};
  pool.next_id_ = state.next_id();
  pool.files_seen_.insert(state.files_seen().begin(), state.files_seen().end());
  pool.following_ = state.following();
  return pool;
}

WorkPool::Next WorkPool::Take(uint32_t worker) {
  if (pending_.empty()) return {in_flight_.empty() && !following_ ? Outcome::kFinished : Outcome::kWait, {}};
  Unit unit = std::move(pending_.front());
  pending_.pop_front();
  in_flight_[unit.id] = {worker, unit};
  return {Outcome::kAssigned, std::move(unit)};
}

std::vector<WorkPool::Unit> WorkPool::HeldBy(uint32_t worker) const {
  std::vector<Unit> held;
  for (const auto& [id, h] : in_flight_) {
    if (h.worker == worker) held.push_back(h.unit);
  }
  return held;
}

bool WorkPool::Done(uint32_t worker, uint64_t id) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end() || it->second.worker != worker) return false;
  in_flight_.erase(it);
  return true;
}

std::vector<WorkPool::Unit> WorkPool::Release(uint32_t worker, const std::function<uint64_t(uint64_t id)>& trained) {
  std::vector<Unit> released;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.worker == worker) {
      Unit unit = std::move(it->second.unit);
      it = in_flight_.erase(it);
      if (trained) unit.range.begin = std::min(unit.range.end, unit.range.begin + trained(unit.id));
      // Wholly trained but not yet reported: nothing goes back. (Its id is
      // kept otherwise: a unit is the same work, wherever it starts.)
      if (unit.range.begin < unit.range.end) released.push_back(std::move(unit));
    } else {
      ++it;
    }
  }
  // Back to the front, in their order: they are the oldest work there is.
  for (auto it = released.rbegin(); it != released.rend(); ++it) pending_.push_front(*it);
  return released;
}

pb::WorkProgress WorkPool::Progress(const std::function<uint64_t(uint64_t id)>& read) const {
  std::vector<Unit> remaining(pending_.begin(), pending_.end());
  for (const auto& [id, held] : in_flight_) {
    Unit unit = held.unit;
    unit.range.begin = std::min(unit.range.end, unit.range.begin + read(id));
    remaining.push_back(std::move(unit));
  }
  std::sort(remaining.begin(), remaining.end(), [](const Unit& a, const Unit& b) { return a.id < b.id; });
  pb::WorkProgress progress;
  for (const std::string& path : files_seen_) progress.add_files_seen(path);
  for (const Unit& unit : remaining) {
    if (unit.range.begin >= unit.range.end) continue;
    pb::WorkRange* r = progress.add_remaining();
    r->set_epoch(unit.epoch);
    r->set_path(unit.range.path);
    r->set_begin(unit.range.begin);
    r->set_end(unit.range.end);
  }
  return progress;
}

}  // namespace sparta
