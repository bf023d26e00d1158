#include "scheduler/work_dispatcher.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/input_split.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace sparta {

namespace {

absl::StatusOr<std::vector<WorkPool::InputFile>> SizesOf(const std::vector<std::string>& paths) {
  std::vector<WorkPool::InputFile> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    if (ec) return absl::NotFoundError(absl::StrCat("data.train: cannot read the size of ", path, ": ", ec.message()));
    files.push_back({path, size});
  }
  return files;
}

}  // namespace

absl::StatusOr<WorkDispatcher> WorkDispatcher::ForJob(const Config& config) {
  if (config.data.follow) {
    // What is there already is the first input; what arrives, the next.
    WorkDispatcher d{WorkPool()};
    d.Follow();
    SPARTA_ASSIGN_OR_RETURN(auto files, d.TakeInArrived(config));
    spdlog::info("data.follow: {} files to start with; watching {} every {} s for more", files.size(),
                 config.data.train.empty() ? std::string() : config.data.train.front(), config.data.follow_interval);
    return d;
  }
  SPARTA_ASSIGN_OR_RETURN(std::vector<std::string> paths, ExpandInputs(config.data.train, "data.train"));
  SPARTA_ASSIGN_OR_RETURN(std::vector<WorkPool::InputFile> files, SizesOf(paths));
  uint64_t total = 0;
  for (const auto& file : files) total += file.size;
  if (total == 0 && !config.data.allow_empty) {
    return absl::FailedPreconditionError(
        "data.train: every input file is empty; check the paths, or set data.allow_empty: true");
  }
  SPARTA_ASSIGN_OR_RETURN(WorkPool pool,
                          WorkPool::Cut(files, config.data.split_size_bytes, static_cast<uint32_t>(config.data.epochs)));
  spdlog::info("data.assignment on_demand: {} files, {} bytes, cut into {} work units over {} epochs", files.size(),
               total, pool.pending(), config.data.epochs);
  return WorkDispatcher(std::move(pool));
}

absl::StatusOr<std::vector<WorkPool::InputFile>> WorkDispatcher::TakeInArrived(const Config& config) {
  SPARTA_ASSIGN_OR_RETURN(std::vector<std::string> paths, ListArrivedInputs(config.data.train, "data.train"));
  SPARTA_ASSIGN_OR_RETURN(std::vector<WorkPool::InputFile> files, SizesOf(paths));
  std::vector<WorkPool::InputFile> added = pool_.AddArrived(files, config.data.split_size_bytes);
  for (const auto& file : added) spdlog::info("data.follow: {} arrived ({} bytes)", file.path, file.size);
  if (!added.empty()) AnswerWaiting();
  return added;
}

pb::WorkPoolState WorkDispatcher::ToState() const {
  pb::WorkPoolState state;
  pool_.ToState(&state);
  state.set_units_done(units_done_);
  state.set_units_released(units_released_);
  state.set_examples_retrained(examples_retrained_);
  return state;
}

WorkDispatcher WorkDispatcher::FromState(const pb::WorkPoolState& state) {
  WorkDispatcher d(WorkPool::FromState(state));
  d.units_done_ = state.units_done();
  d.units_released_ = state.units_released();
  d.examples_retrained_ = state.examples_retrained();
  return d;
}

pb::Header WorkDispatcher::GrantOf(const WorkPool::Unit& unit) {
  pb::Header grant;
  grant.set_type(pb::WORK_GRANT);
  pb::WorkRange* r = grant.mutable_work();
  r->set_id(unit.id);
  r->set_epoch(unit.epoch);
  r->set_path(unit.range.path);
  r->set_begin(unit.range.begin);
  r->set_end(unit.range.end);
  return grant;
}

bool WorkDispatcher::Grant(uint32_t worker, const std::string& routing_id) {
  WorkPool::Next next = pool_.Take(worker);
  if (next.outcome == WorkPool::Outcome::kWait) return false;
  pb::Header grant;
  if (next.outcome == WorkPool::Outcome::kAssigned) {
    grant = GrantOf(next.unit);
  } else {
    grant.set_type(pb::WORK_GRANT);  // no unit: every one is done
  }
  outbox_.push_back({routing_id, std::move(grant)});
  return true;
}

void WorkDispatcher::OnRequest(uint32_t worker, const std::string& routing_id, const std::vector<uint64_t>* held,
                               bool resent) {
  // A worker asks again only after an answer, except when it resends to a
  // restarted scheduler: one held request per worker.
  waiting_.erase(worker);
  if (draining_.count(worker)) return AnswerDrained(routing_id);
  if (held != nullptr) {
    for (const WorkPool::Unit& unit : pool_.HeldBy(worker)) {
      if (std::find(held->begin(), held->end(), unit.id) != held->end()) continue;
      if (!resent) {
        // Asked anew, the worker has had every answer before: it trained
        // this unit, and its WORK_DONE went to a scheduler that died before
        // saving it (the worker sends it again once it sees this one).
        OnDone(worker, unit.id);
        continue;
      }
      spdlog::warn("work unit {} was granted to a worker that never got it; granting it again", unit.id);
      outbox_.push_back({routing_id, GrantOf(unit)});
      return;
    }
  }
  if (!Grant(worker, routing_id)) waiting_[worker] = routing_id;
}

void WorkDispatcher::Drain(uint32_t worker) {
  draining_.insert(worker);
  auto it = waiting_.find(worker);
  if (it == waiting_.end()) return;
  AnswerDrained(it->second);
  waiting_.erase(it);
}

void WorkDispatcher::AnswerDrained(const std::string& routing_id) {
  pb::Header none;
  none.set_type(pb::WORK_GRANT);
  none.set_error("drained (sparta-ctl drain): finish the units held, report, and leave");
  outbox_.push_back({routing_id, std::move(none)});
}

void WorkDispatcher::OnDone(uint32_t worker, uint64_t id) {
  if (!pool_.Done(worker, id)) return;
  ++units_done_;
  // The last unit done: the workers waiting for one are told there is none.
  if (pool_.finished()) AnswerWaiting();
}

size_t WorkDispatcher::OnLost(uint32_t worker, const pb::WorkerProgress& last) {
  waiting_.erase(worker);
  const auto& units = last.units();
  const std::vector<WorkPool::Unit> released = pool_.Release(worker, [&](uint64_t id) -> uint64_t {
    auto it = units.find(id);
    return it == units.end() ? 0 : it->second.trained_bytes();
  });
  for (const WorkPool::Unit& unit : released) {
    auto it = units.find(unit.id);
    if (it != units.end()) examples_retrained_ += it->second.taken_examples();
    spdlog::warn("work unit {} (epoch {}, bytes {}-{} of {}) goes back to the pool", unit.id, unit.epoch + 1,
                 unit.range.begin, unit.range.end, unit.range.path);
  }
  units_released_ += released.size();
  AnswerWaiting();
  return released.size();
}

bool WorkDispatcher::Idle(uint32_t worker) const {
  return waiting_.count(worker) > 0 && pool_.HeldBy(worker).empty();
}

void WorkDispatcher::AnswerWaiting() {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (!Grant(it->first, it->second)) return;  // nothing left to hand out
    it = waiting_.erase(it);
  }
}

}  // namespace sparta
