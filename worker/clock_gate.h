// ClockGate: a worker's side of consistency control (worker.consistency).
//
// The worker's clock is the number of steps it has finished with every push
// acknowledged; it reports each rise to the scheduler, which sends back the
// minimum over all workers. Before step t pulls its parameters, the trainer
// calls WaitForStep(t): under ssp/bsp it blocks until the slowest worker has
// finished step t - 1 - staleness (bsp is staleness 0), so no worker runs
// more than `staleness` steps ahead of the slowest, as in SSP (Ho et al.,
// NIPS 2013) and the OSDI'14 parameter server's bounded delay. Under asp
// nothing waits, but the staleness is measured all the same.
//
// With worker.threads > 1 each compute thread keeps its own step count and
// the worker's clock is the least of them, so a worker step is one batch on
// every thread (under bsp, one step of threads x batch_size examples).
//
// While it waits the gate resends the worker's clock every `resend`
// seconds, so a restarted scheduler learns it again. Wake() interrupts a
// wait (a checkpoint pause must be taken at this step boundary).
//
// Thread-safe: Advance/WaitForStep come from the training thread(s),
// OnMinClock/Wake/Close from the scheduler client's thread.
#ifndef SPARTA_WORKER_CLOCK_GATE_H_
#define SPARTA_WORKER_CLOCK_GATE_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/worker_clock.h"

namespace sparta {

class ClockGate {
 public:
  static constexpr uint64_t kFinished = kFinishedClock;  // common/worker_clock.h
  using SendClock = std::function<void(uint64_t clock)>;

  // staleness < 0: asp (never wait). `start_clock`: this worker's clock
  // when it starts (a restored job goes on from its checkpoint);
  // `slowest_start`: the slowest worker's then. `informed()` says whether the
  // slowest worker's clock is current (the scheduler, which relays it, is
  // answering): while it is not, steps are not counted in the staleness
  // figures, which would measure the silence rather than the workers.
  ClockGate(int staleness, int threads, uint64_t start_clock, uint64_t slowest_start, double resend_seconds,
            SendClock send, std::function<bool()> informed = nullptr)
      : staleness_(staleness),
        resend_(resend_seconds),
        send_(std::move(send)),
        informed_(std::move(informed)),
        thread_clocks_(threads, start_clock),
        clock_(start_clock),
        min_(slowest_start) {}

  // Steps a worker may run ahead of the slowest; < 0: unbounded (asp).
  int staleness() const { return staleness_; }

  // Compute thread `thread` has finished `clock` steps with their pushes
  // acknowledged (kFinished: it has stopped training).
  void Advance(int thread, uint64_t clock) {
    uint64_t worker_clock;
    {
      std::lock_guard<std::mutex> lock(mu_);
      thread_clocks_[thread] = std::max(thread_clocks_[thread], clock == kFinished ? kFinished : clock + offset_);
      worker_clock = *std::min_element(thread_clocks_.begin(), thread_clocks_.end());
      if (worker_clock <= clock_) return;
      clock_ = worker_clock;
    }
    send_(worker_clock);
  }

  // data.assignment on_demand: this worker waited for work, idle, while
  // the others trained on without it (the scheduler counted it out), and
  // now rejoins them at `clock`, the slowest one's: its steps count on
  // from there (the step numbers its trainer passes are shifted to match).
  // Only while every thread is idle, between two work units.
  void Rebase(uint64_t clock) {
    std::lock_guard<std::mutex> lock(mu_);
    if (clock <= clock_) return;
    const uint64_t shift = clock - clock_;
    offset_ += shift;
    for (uint64_t& c : thread_clocks_) {
      if (c != kFinished) c += shift;
    }
    clock_ = clock;
    min_ = std::max(min_, clock);
  }

  // What Rebase has added to the trainer's step numbers so far.
  uint64_t offset() const {
    std::lock_guard<std::mutex> lock(mu_);
    return offset_;
  }

  void OnMinClock(uint64_t min) {
    std::lock_guard<std::mutex> lock(mu_);
    if (min <= min_) return;
    min_ = min;
    cv_.notify_all();
  }

  void Wake() {
    std::lock_guard<std::mutex> lock(mu_);
    ++wakeups_;
    cv_.notify_all();
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }

  enum class Wait { kReady, kInterrupted };

  // Before step `step` (1-based) pulls: waits until the slowest worker has
  // finished step - 1 - staleness, or until Wake() (kInterrupted; call again
  // after handling it). Records the step's staleness once it may go on.
  absl::StatusOr<Wait> WaitForStep(uint64_t step) {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t behind = step - 1 + offset_;  // steps this worker has finished before this one
    if (!announced_) {
      // The scheduler learns this worker's starting clock (after a restore, not 0).
      announced_ = true;
      const uint64_t clock = clock_;
      lock.unlock();
      send_(clock);
      lock.lock();
    }
    if (staleness_ >= 0) {
      const uint64_t needed = behind > static_cast<uint64_t>(staleness_) ? behind - staleness_ : 0;
      const uint64_t wakeups = wakeups_;
      while (min_ < needed) {
        if (closed_) return absl::CancelledError("the job ended while this worker waited for the slowest");
        if (wakeups_ != wakeups) return Wait::kInterrupted;
        if (cv_.wait_for(lock, std::chrono::duration<double>(resend_)) == std::cv_status::timeout) {
          const uint64_t clock = clock_;
          lock.unlock();
          send_(clock);
          lock.lock();
        }
      }
    }
    if (informed_ && !informed_()) return Wait::kReady;
    const uint64_t staleness = behind > min_ ? behind - min_ : 0;
    max_staleness_ = std::max(max_staleness_, staleness);
    sum_staleness_ += static_cast<double>(staleness);
    ++steps_;
    return Wait::kReady;
  }

  uint64_t max_staleness() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_staleness_;
  }
  double mean_staleness() const {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_ ? sum_staleness_ / steps_ : 0;
  }

 private:
  const int staleness_;
  const double resend_;
  const SendClock send_;
  const std::function<bool()> informed_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> thread_clocks_;
  uint64_t clock_;  // the least of thread_clocks_, as last sent
  uint64_t offset_ = 0;  // added to the trainer's step numbers (Rebase)
  bool announced_ = false;
  uint64_t min_;  // the slowest worker's clock, as last heard
  uint64_t wakeups_ = 0;
  bool closed_ = false;
  uint64_t max_staleness_ = 0;
  double sum_staleness_ = 0;
  uint64_t steps_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_CLOCK_GATE_H_
