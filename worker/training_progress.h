// TrainingProgress: a worker's training figures as its progress line shows
// them (examples/s, loss, progressive AUC, ETA), for the scheduler (sent with
// heartbeats: `sparta-ctl status`), for /metrics, and, with
// log.metrics_dir, as one CSV row per progress line (`scripts/sparta plot`).
//
// Thread-safe: every compute thread counts its steps; the thread that logs
// progress records each window; the heartbeat and scrape threads read.
#ifndef SPARTA_WORKER_TRAINING_PROGRESS_H_
#define SPARTA_WORKER_TRAINING_PROGRESS_H_

#include <atomic>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "common/metrics.h"
#include "sparta.pb.h"

namespace sparta {

class TrainingProgress {
 public:
  // One progress line's figures (the window since the previous one).
  struct Window {
    uint32_t epoch = 0;  // 1-based
    double examples_per_sec = 0;
    double loss = 0;
    double auc = 0;  // of the window's predictions, made before training on them
    double eta_seconds = 0;
    double done_fraction = 0;
    double network_wait_share = 0;
    // The longest time between two of the logging thread's batches in the
    // window: a stall (a shard handing off, a failover) shows here, where
    // the window's mean hides it.
    double longest_step_seconds = 0;
  };

  // Appends rows to `path` (the header first if it is new).
  absl::Status OpenCsv(const std::string& path);

  void AddStep(uint64_t examples) {
    examples_.fetch_add(examples, std::memory_order_relaxed);
    steps_.fetch_add(1, std::memory_order_relaxed);
  }
  void SetBaseSteps(uint64_t steps) { steps_.store(steps, std::memory_order_relaxed); }
  void Record(const Window& window);

  pb::WorkerProgress Snapshot() const;
  void WriteTo(MetricWriter& out) const;

 private:
  std::atomic<uint64_t> examples_{0};
  std::atomic<uint64_t> steps_{0};
  mutable std::mutex mu_;
  Window last_;  // guarded by mu_
  std::ofstream csv_;
  double start_unix_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_TRAINING_PROGRESS_H_
