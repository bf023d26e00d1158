#include "worker/training_progress.h"

#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sparta {
namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

absl::Status TrainingProgress::OpenCsv(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool fresh = !std::filesystem::exists(path) || std::filesystem::file_size(path) == 0;
  csv_.open(path, std::ios::app);
  if (!csv_) return absl::UnavailableError(absl::StrCat("log.metrics_dir: cannot write '", path, "'"));
  if (fresh) {
    csv_ << "unix_time,elapsed_s,epoch,examples,steps,examples_per_sec,loss,auc,eta_s,done,network_wait,"
            "longest_step_s\n";
  }
  start_unix_ = UnixNow();
  return absl::OkStatus();
}

void TrainingProgress::Record(const Window& window) {
  std::lock_guard<std::mutex> lock(mu_);
  last_ = window;
  if (!csv_.is_open()) return;
  const double now = UnixNow();
  csv_ << absl::StrFormat("%.3f,%.3f,%u,%u,%u,%.1f,%.6f,%.6f,%.1f,%.4f,%.4f,%.4f\n", now, now - start_unix_, window.epoch,
                          examples_.load(), steps_.load(), window.examples_per_sec, window.loss, window.auc,
                          window.eta_seconds, window.done_fraction, window.network_wait_share,
                          window.longest_step_seconds);
  csv_.flush();  // a plot of a running job reads it
}

pb::WorkerProgress TrainingProgress::Snapshot() const {
  pb::WorkerProgress p;
  p.set_examples(examples_.load(std::memory_order_relaxed));
  p.set_steps(steps_.load(std::memory_order_relaxed));
  std::lock_guard<std::mutex> lock(mu_);
  p.set_epoch(last_.epoch);
  p.set_examples_per_sec(last_.examples_per_sec);
  p.set_loss(last_.loss);
  p.set_auc(last_.auc);
  p.set_eta_seconds(last_.eta_seconds);
  p.set_done_fraction(last_.done_fraction);
  return p;
}

void TrainingProgress::WriteTo(MetricWriter& out) const {
  const pb::WorkerProgress p = Snapshot();
  out.Counter("sparta_examples_total", "Training examples this worker has trained on.",
              static_cast<double>(p.examples()));
  out.Counter("sparta_steps_total", "Training steps (batches) this worker has finished.",
              static_cast<double>(p.steps()));
  out.Gauge("sparta_examples_per_second", "Throughput over the last progress interval.", p.examples_per_sec());
  out.Gauge("sparta_train_loss", "Mean logloss over the last progress interval.", p.loss());
  out.Gauge("sparta_train_auc", "Progressive AUC over the last progress interval.", p.auc());
  out.Gauge("sparta_eta_seconds", "Estimated seconds of training left.", p.eta_seconds());
  out.Gauge("sparta_epoch", "Current epoch (1-based).", p.epoch());
}

}  // namespace sparta
