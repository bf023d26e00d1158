// StepGate: where a training thread stops for a checkpoint.
//
// A checkpoint must be one consistent cut: every push a worker made before
// it is in the cut, none after it. So the scheduler asks every worker to
// pause (RequestPause); each one, at its next step boundary and with no
// push in flight, reports how many steps it has finished (the on_paused
// callback, which sends PAUSED) and waits in PauseHere() until Resume().
// A worker that has finished training answers a pause at once.
//
// Thread-safe: RequestPause/Resume/Close come from the scheduler client's
// thread, PauseHere/Finished from the training thread.
#ifndef SPARTA_WORKER_STEP_GATE_H_
#define SPARTA_WORKER_STEP_GATE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

#include "absl/status/status.h"

namespace sparta {

class StepGate {
 public:
  using PausedCallback = std::function<void(uint64_t version, uint64_t steps)>;
  explicit StepGate(PausedCallback on_paused) : on_paused_(std::move(on_paused)) {}

  void RequestPause(uint64_t version) {
    std::unique_lock<std::mutex> lock(mu_);
    if (finished_) {
      const uint64_t steps = steps_;
      lock.unlock();
      on_paused_(version, steps);
      return;
    }
    version_ = version;
    requested_.store(true, std::memory_order_release);
  }

  void Resume() {
    std::lock_guard<std::mutex> lock(mu_);
    requested_.store(false, std::memory_order_release);
    paused_ = false;
    cv_.notify_all();
  }

  // The job has ended: nothing may wait any more.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }

  // Cheap check for the training loop.
  bool pause_requested() const { return requested_.load(std::memory_order_acquire); }

  // Training thread, at a step boundary with every push acknowledged.
  absl::Status PauseHere(uint64_t steps) {
    uint64_t version;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!requested_.load()) return absl::OkStatus();
      paused_ = true;
      version = version_;
    }
    on_paused_(version, steps);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !paused_ || closed_; });
    return closed_ ? absl::CancelledError("the job ended during a checkpoint") : absl::OkStatus();
  }

  // Training is over after `steps` steps; later pauses are answered at once.
  void Finished(uint64_t steps) {
    uint64_t version = 0;
    bool pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_ = true;
      steps_ = steps;
      pending = requested_.exchange(false);
      version = version_;
    }
    if (pending) on_paused_(version, steps);
  }

 private:
  const PausedCallback on_paused_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> requested_{false};
  bool paused_ = false;
  bool finished_ = false;
  bool closed_ = false;
  uint64_t version_ = 0;
  uint64_t steps_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_STEP_GATE_H_
