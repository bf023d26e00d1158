#include "worker/progress_window.h"

#include <algorithm>

#include "common/logging.h"
#include "worker/eval_metrics.h"

namespace sparta {

ProgressWindow::ProgressWindow(const Config& config, bool log, TrainingProgress* progress, double total_bytes)
    : config_(config), log_(log), progress_(progress), total_bytes_(total_bytes) {}

void ProgressWindow::StartBatch(int epoch) {
  if (epoch == epoch_) return;
  if (epoch_examples_ > 0) spdlog::info("epoch {} done: mean train logloss {:.5f}", epoch_ + 1, epoch_loss());
  epoch_ = epoch;
  epoch_loss_ = 0;
  epoch_examples_ = 0;
}

void ProgressWindow::AddBatch(const Batch& batch, double loss, std::span<const float> probs, uint64_t examples,
                              double network_wait_seconds) {
  if (progress_ != nullptr) progress_->AddStep(batch.size);
  if (log_) {
    window_probs_.insert(window_probs_.end(), probs.begin(), probs.end());
    window_labels_.insert(window_labels_.end(), batch.labels.begin(), batch.labels.begin() + probs.size());
  }
  epoch_loss_ += loss;
  epoch_examples_ += batch.size;
  window_loss_ += loss;
  window_examples_ += batch.size;
  const auto now = Clock::now();
  window_longest_ = std::max(window_longest_, std::chrono::duration<double>(now - last_batch_).count());
  last_batch_ = now;
  const double since = std::chrono::duration<double>(now - last_).count();
  if (!log_ || since < config_.log.progress_interval) return;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double done = total_bytes_ > 0 ? batch.bytes_read / total_bytes_ : 0;
  TrainingProgress::Window w;
  w.epoch = static_cast<uint32_t>(epoch_ + 1);
  w.examples_per_sec = window_examples_ / since;
  w.loss = window_loss_ / window_examples_;
  w.auc = Auc(window_probs_, window_labels_);
  w.done_fraction = done;
  w.eta_seconds = done > 0 ? elapsed * (1 - done) / done : 0.0;
  w.network_wait_share = (network_wait_seconds - window_wait_start_) / since;
  w.longest_step_seconds = window_longest_;
  spdlog::info("epoch {}/{} | {} examples | {:.0f} ex/s | loss {:.5f} | AUC {:.4f} | {:.1f}% | ETA {:.0f} s", w.epoch,
               config_.data.epochs, examples, w.examples_per_sec, w.loss, w.auc, 100 * done, w.eta_seconds);
  if (progress_ != nullptr) progress_->Record(w);
  last_ = now;
  window_loss_ = 0;
  window_examples_ = 0;
  window_probs_.clear();
  window_labels_.clear();
  window_wait_start_ = network_wait_seconds;
  window_longest_ = 0;
}

}  // namespace sparta
