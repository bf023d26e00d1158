// ProgressWindow: what a compute thread reports while it trains: the mean
// loss of each epoch (logged when the next begins), and every
// log.progress_interval seconds a window's examples/s, loss, progressive-
// validation AUC (predictions made before training on them), share of time
// waiting on the network, fraction done and ETA, logged and recorded in
// TrainingProgress (/metrics, the CSV, heartbeats).
//
// Not thread-safe: one per compute thread.
#ifndef SPARTA_WORKER_PROGRESS_WINDOW_H_
#define SPARTA_WORKER_PROGRESS_WINDOW_H_

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "common/config.h"
#include "sparta/sdk/example.h"
#include "worker/training_progress.h"

namespace sparta {

class ProgressWindow {
 public:
  // `log`: this thread logs and records windows (the first thread does);
  // `progress` may be null. `total_bytes`: the input over all epochs, for
  // the fraction done.
  ProgressWindow(const Config& config, bool log, TrainingProgress* progress, double total_bytes);

  // A batch of `epoch` is about to be counted: a new epoch logs the last one's loss.
  void StartBatch(int epoch);
  // Counts a trained batch: its summed loss and the probabilities predicted
  // for its first examples. `examples` is the thread's total so far and
  // `network_wait_seconds` its time blocked on the network so far.
  void AddBatch(const Batch& batch, double loss, std::span<const float> probs, uint64_t examples,
                double network_wait_seconds);

  // The mean loss of the epoch in progress (the last one, at the end).
  double epoch_loss() const { return epoch_examples_ ? epoch_loss_ / epoch_examples_ : 0; }

 private:
  using Clock = std::chrono::steady_clock;

  const Config& config_;
  const bool log_;
  TrainingProgress* const progress_;
  const double total_bytes_;
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = start_;
  Clock::time_point last_batch_ = start_;
  double window_longest_ = 0;  // seconds: the longest gap between two batches in the window
  int epoch_ = -1;
  double epoch_loss_ = 0, window_loss_ = 0;
  uint64_t epoch_examples_ = 0, window_examples_ = 0;
  std::vector<float> window_probs_, window_labels_;
  double window_wait_start_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_PROGRESS_WINDOW_H_
