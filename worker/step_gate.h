// StepGate: where a worker's training threads stop for a checkpoint.
//
// A checkpoint must be one consistent cut: every push a worker made before
// it is in the cut, none after it. So the scheduler asks every worker to
// pause (RequestPause); each of the worker's compute threads, at its next
// step boundary and with no push in flight, stops in PauseHere(). When the
// last of them has stopped (or finished training), the worker reports how
// many steps it has finished in all (the on_paused callback, which sends
// PAUSED), and they all wait until Resume(). A worker whose threads have
// all finished answers a pause at once.
//
// Thread-safe: RequestPause/Resume/Close come from the scheduler client's
// thread, PauseHere/Finished from the compute threads.
#ifndef SPARTA_WORKER_STEP_GATE_H_
#define SPARTA_WORKER_STEP_GATE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <numeric>
#include <vector>

#include "absl/status/status.h"

namespace sparta {

class StepGate {
 public:
  using PausedCallback = std::function<void(uint64_t version, uint64_t steps)>;
  // `base_steps`: steps restored from a checkpoint, counted in every report.
  explicit StepGate(PausedCallback on_paused, int threads = 1, uint64_t base_steps = 0)
      : on_paused_(std::move(on_paused)), base_steps_(base_steps), steps_(threads, 0), state_(threads, kRunning) {}

  // Before the compute threads start: how many there are and the steps
  // restored from a checkpoint.
  void Configure(int threads, uint64_t base_steps) {
    std::lock_guard<std::mutex> lock(mu_);
    base_steps_ = base_steps;
    steps_.assign(threads, 0);
    state_.assign(threads, kRunning);
  }

  void RequestPause(uint64_t version) {
    std::unique_lock<std::mutex> lock(mu_);
    if (version != version_) reported_ = false;
    version_ = version;
    requested_.store(true, std::memory_order_release);
    ReportIfAllStopped(lock);
  }

  void Resume() {
    std::lock_guard<std::mutex> lock(mu_);
    requested_.store(false, std::memory_order_release);
    reported_ = false;
    ++generation_;
    // Released threads are running from here on, not from when they wake:
    // a pause asked right after this (the scheduler sends RESUME and the
    // next PAUSE back to back) must wait for them to stop again, not be
    // reported at once with their old steps while they train on.
    for (State& s : state_) {
      if (s == kPaused) s = kRunning;
    }
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

  // Compute thread `thread`, at a step boundary with every push acknowledged,
  // after `steps` steps of its own.
  absl::Status PauseHere(int thread, uint64_t steps) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!requested_.load()) return absl::OkStatus();
    steps_[thread] = steps;
    state_[thread] = kPaused;
    const uint64_t generation = generation_;
    ReportIfAllStopped(lock);
    cv_.wait(lock, [&] { return generation_ != generation || closed_; });
    return closed_ ? absl::CancelledError("the job ended during a checkpoint") : absl::OkStatus();
  }

  // Thread `thread` is done training after `steps` steps of its own; later
  // pauses do not wait for it.
  void Finished(int thread, uint64_t steps) {
    std::unique_lock<std::mutex> lock(mu_);
    steps_[thread] = steps;
    state_[thread] = kFinished;
    ReportIfAllStopped(lock);
  }

 private:
  enum State { kRunning, kPaused, kFinished };

  // With a pause requested and every thread paused or finished, reports
  // once (without the lock: the callback sends a message).
  void ReportIfAllStopped(std::unique_lock<std::mutex>& lock) {
    if (!requested_.load() || reported_) return;
    for (State s : state_) {
      if (s == kRunning) return;
    }
    reported_ = true;
    bool all_finished = true;
    for (State s : state_) all_finished &= s == kFinished;
    // Finished threads never call PauseHere: a pause of a finished worker ends at once.
    if (all_finished) requested_.store(false, std::memory_order_release);
    const uint64_t version = version_;
    const uint64_t steps = base_steps_ + std::accumulate(steps_.begin(), steps_.end(), uint64_t{0});
    lock.unlock();
    on_paused_(version, steps);
    lock.lock();
  }

  const PausedCallback on_paused_;
  uint64_t base_steps_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> requested_{false};
  bool reported_ = false;  // PAUSED sent for the current request
  bool closed_ = false;
  uint64_t version_ = 0;
  uint64_t generation_ = 0;  // bumped by Resume()
  std::vector<uint64_t> steps_;
  std::vector<State> state_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_STEP_GATE_H_
