#include "worker/data/data_loader.h"

namespace sparta {

DataLoader::DataLoader(std::unique_ptr<SplitReader> reader, Options options)
    : reader_(std::move(reader)), options_(options) {}

DataLoader::DataLoader(std::unique_ptr<SplitReader> reader, WorkFeed* feed, Options options)
    : reader_(std::move(reader)), feed_(feed), options_(options) {}

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

absl::Status DataLoader::ReadUnits(bool* stopped) {
  BatchBuilder builder;
  uint64_t bytes_before = 0;  // of the units read before this one
  while (!*stopped) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting_for_work_ = true;
      cv_.notify_all();
    }
    auto next = feed_->Next();
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting_for_work_ = false;
    }
    if (!next.ok()) return next.status();
    if (!next->has_value()) break;
    const WorkFeed::Unit& unit = **next;
    auto emit = [&](uint64_t bytes) {
      auto batch = builder.Finish(bytes_before + bytes);
      if (batch == nullptr) return true;
      batch->epoch = static_cast<int>(unit.epoch);
      batch->unit = unit.id;
      batch->unit_batch = feed_->Emitted(unit.id, bytes, batch->size);
      *stopped = !Emit(std::move(batch));
      return !*stopped;
    };
    uint64_t done = 0;
    auto status = reader_->ReadUnit(unit.range, unit.epoch == 0, [&](const Example& ex, uint64_t bytes) {
      builder.Add(ex);
      done = bytes;
      return static_cast<int>(builder.size()) < options_.batch_size || emit(bytes);
    });
    bad_lines_.store(reader_->bad_lines());
    if (!status.ok()) return status;
    // A batch never spans two units: the unit's last one may be short.
    if (!*stopped && emit(done)) feed_->Sealed(unit.id);
    bytes_before += unit.range.end - unit.range.begin;
  }
  return absl::OkStatus();
}

void DataLoader::Run() {
  BatchBuilder builder;
  absl::Status status;
  if (feed_ != nullptr) {
    bool stopped = false;
    status = ReadUnits(&stopped);
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    finished_ = true;
    cv_.notify_all();
    return;
  }
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

absl::StatusOr<std::unique_ptr<Batch>> DataLoader::NextWithin(std::chrono::milliseconds within, bool* timed_out) {
  std::unique_lock<std::mutex> lock(mu_);
  *timed_out = !cv_.wait_for(lock, within, [&] { return !queue_.empty() || finished_ || stopped_; });
  if (*timed_out) return std::unique_ptr<Batch>();
  return TakeLocked();
}

absl::StatusOr<std::unique_ptr<Batch>> DataLoader::Next(bool* starved) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool may_starve = starved != nullptr;
  if (may_starve) *starved = false;
  cv_.wait(lock, [&] {
    return !queue_.empty() || finished_ || stopped_ || (may_starve && waiting_for_work_);
  });
  if (queue_.empty() && !finished_ && !stopped_ && may_starve) {
    *starved = true;
    return std::unique_ptr<Batch>();
  }
  return TakeLocked();
}

absl::StatusOr<std::unique_ptr<Batch>> DataLoader::TakeLocked() {
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
