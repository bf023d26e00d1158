// PushWindow: a compute thread's pushes that are sent and not yet
// acknowledged, oldest first (the bounded-delay window of the OSDI'14
// parameter server: worker.max_inflight steps' pushes may be in flight).
//
// Retiring a step waits for all of its pushes and then tells the clock gate
// that the step is finished (its updates are on the servers), which is what
// ssp and bsp wait on. The wait itself is the caller's (`wait`), so that the
// trainer counts time blocked on the network in one place.
//
// Not thread-safe: one per compute thread.
#ifndef SPARTA_WORKER_PUSH_WINDOW_H_
#define SPARTA_WORKER_PUSH_WINDOW_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "worker/clock_gate.h"
#include "worker/kv_client.h"

namespace sparta {

class PushWindow {
 public:
  using Wait = std::function<absl::Status(const KVClient::Ticket&)>;
  // A retired step's batch: its work unit (data.assignment on_demand) and
  // its place among the unit's batches.
  using Retired = std::function<void(uint64_t unit, uint32_t unit_batch)>;

  // `clock` may be null (no consistency bookkeeping); `thread` is the
  // compute thread's index in it. `retired`, if set, hears of every step
  // retired.
  PushWindow(ClockGate* clock, int thread, Wait wait, Retired retired = nullptr)
      : clock_(clock), thread_(thread), wait_(std::move(wait)), retired_(std::move(retired)) {}

  // Step `step`'s pushes, just sent, for batch `unit_batch` of work unit
  // `unit` (0: none).
  void Add(uint64_t step, std::vector<KVClient::Ticket> tickets, uint64_t unit = 0, uint32_t unit_batch = 0) {
    pushes_.push_back({step, std::move(tickets), unit, unit_batch});
  }

  size_t size() const { return pushes_.size(); }
  bool empty() const { return pushes_.empty(); }

  // Waits for the oldest step's pushes; the clock counts it as finished.
  absl::Status RetireOldest() {
    for (const auto& ticket : pushes_.front().tickets) SPARTA_RETURN_IF_ERROR(wait_(ticket));
    if (clock_ != nullptr) clock_->Advance(thread_, pushes_.front().step);
    if (retired_ && pushes_.front().unit != 0) retired_(pushes_.front().unit, pushes_.front().unit_batch);
    pushes_.pop_front();
    return absl::OkStatus();
  }
  // Retires until at most `in_flight` steps' pushes are left.
  absl::Status Trim(size_t in_flight) {
    while (pushes_.size() > in_flight) SPARTA_RETURN_IF_ERROR(RetireOldest());
    return absl::OkStatus();
  }
  absl::Status Drain() { return Trim(0); }
  // Retires every step up to `step`, then, without waiting, every step
  // whose pushes are already acknowledged (so the clock rises as early as
  // it can).
  absl::Status RetireThrough(uint64_t step) {
    while (!pushes_.empty() && pushes_.front().step <= step) SPARTA_RETURN_IF_ERROR(RetireOldest());
    while (!pushes_.empty() &&
           std::all_of(pushes_.front().tickets.begin(), pushes_.front().tickets.end(), KVClient::Done)) {
      SPARTA_RETURN_IF_ERROR(RetireOldest());
    }
    return absl::OkStatus();
  }

  // Before step `step` (1-based) pulls, under ssp/bsp: its view of the
  // parameters may lag the slowest worker by at most the clock's staleness,
  // and this worker's own pushes count too, so its steps up to
  // step-1-staleness are retired first; then the clock is waited on. False:
  // woken for a checkpoint, so the step is deferred (the pause comes first).
  // True at once without a clock.
  absl::StatusOr<bool> AwaitTurn(uint64_t step) {
    if (clock_ == nullptr) return true;
    const int staleness = clock_->staleness();
    const uint64_t needed = staleness < 0 || step - 1 <= static_cast<uint64_t>(staleness) ? 0 : step - 1 - staleness;
    SPARTA_RETURN_IF_ERROR(RetireThrough(needed));
    SPARTA_ASSIGN_OR_RETURN(ClockGate::Wait wait, clock_->WaitForStep(step));
    return wait == ClockGate::Wait::kReady;
  }

 private:
  struct Pending {
    uint64_t step;
    std::vector<KVClient::Ticket> tickets;
    uint64_t unit;
    uint32_t unit_batch;
  };
  ClockGate* const clock_;
  const int thread_;
  const Wait wait_;
  const Retired retired_;
  std::deque<Pending> pushes_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_PUSH_WINDOW_H_
