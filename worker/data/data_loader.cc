#include "worker/data/data_loader.h"

namespace sparta {

DataLoader::DataLoader(std::unique_ptr<SplitReader> reader, Options options)
    : reader_(std::move(reader)), options_(options) {}

DataLoader::~DataLoader() { Stop(); }

void DataLoader::Start() { thread_ = std::thread([this] { Run(); }); }

void DataLoader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool DataLoader::Emit(std::unique_ptr<Batch> batch) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stopped_ || static_cast<int>(queue_.size()) < options_.queue_batches; });
  if (stopped_) return false;
  queue_.push_back(std::move(batch));
  cv_.notify_all();
  return true;
}

void DataLoader::Run() {
  BatchBuilder builder;
  absl::Status status;
  const uint64_t epoch_bytes = reader_->total_bytes();
  bool stopped = false;
  for (int epoch = 0; epoch < options_.epochs && status.ok() && !stopped; ++epoch) {
    uint64_t done = 0;
    status = reader_->ReadPass([&](const Example& ex, uint64_t bytes) {
      builder.Add(ex);
      done = bytes;
      if (static_cast<int>(builder.size()) < options_.batch_size) return true;
      auto batch = builder.Finish(epoch * epoch_bytes + bytes);
      batch->epoch = epoch;
      stopped = !Emit(std::move(batch));
      return !stopped;
    });
    bad_lines_.store(reader_->bad_lines());
    // Batches do not cross epochs: the last one of an epoch may be short.
    if (auto batch = builder.Finish(epoch * epoch_bytes + done); batch && status.ok() && !stopped) {
      batch->epoch = epoch;
      stopped = !Emit(std::move(batch));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  status_ = status;
  finished_ = true;
  cv_.notify_all();
}

absl::StatusOr<std::unique_ptr<Batch>> DataLoader::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || finished_ || stopped_; });
  if (!queue_.empty()) {
    auto batch = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return batch;
  }
  if (!status_.ok()) return status_;
  return std::unique_ptr<Batch>();
}

}  // namespace sparta
