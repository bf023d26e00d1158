// DataLoader: a background thread that reads a worker's input split for
// `epochs` passes and turns it into batches, a bounded number ahead of the
// trainer, so that parsing overlaps compute and communication.
//
// Thread-safe: Next() and Stop() may be called from any thread (usually the
// trainer's); the reading happens on the loader's own thread.
#ifndef SPARTA_WORKER_DATA_DATA_LOADER_H_
#define SPARTA_WORKER_DATA_DATA_LOADER_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "worker/data/batch.h"
#include "worker/data/split_reader.h"

namespace sparta {

class DataLoader {
 public:
  struct Options {
    int batch_size = 4096;
    int epochs = 1;
    int queue_batches = 4;
  };

  DataLoader(std::unique_ptr<SplitReader> reader, Options options);
  ~DataLoader();

  void Start();
  // The next batch; nullptr after the last one; an error if reading failed.
  absl::StatusOr<std::unique_ptr<Batch>> Next();
  // Stops reading early (e.g. when the job is aborted).
  void Stop();

  uint64_t bytes_per_epoch() const { return reader_->total_bytes(); }
  uint64_t bad_lines() const { return bad_lines_.load(); }

 private:
  void Run();
  bool Emit(std::unique_ptr<Batch> batch);  // false if stopped

  const std::unique_ptr<SplitReader> reader_;
  const Options options_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Batch>> queue_;
  bool finished_ = false;
  bool stopped_ = false;
  absl::Status status_;
  std::atomic<uint64_t> bad_lines_{0};
};

}  // namespace sparta

#endif  // SPARTA_WORKER_DATA_DATA_LOADER_H_
