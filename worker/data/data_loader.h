// DataLoader: a background thread that reads a worker's input split for
// `epochs` passes and turns it into batches, a bounded number ahead of the
// trainer, so that parsing overlaps compute and communication. With a
// WorkFeed (data.assignment on_demand) it reads the work units the feed
// hands out instead, until there are none; a batch then never spans two
// units, and carries its unit's id.
//
// Thread-safe: Next() and Stop() may be called from any thread (usually the
// trainer's); the reading happens on the loader's own thread.
#ifndef SPARTA_WORKER_DATA_DATA_LOADER_H_
#define SPARTA_WORKER_DATA_DATA_LOADER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "worker/data/batch.h"
#include "worker/data/split_reader.h"
#include "worker/work_feed.h"

namespace sparta {

class DataLoader {
 public:
  struct Options {
    int batch_size = 4096;
    int epochs = 1;
    int queue_batches = 4;
    // With a feed: the bytes per epoch this worker expects to read (its
    // share of the input), for progress and ETA only.
    uint64_t expected_bytes = 0;
  };

  DataLoader(std::unique_ptr<SplitReader> reader, Options options);
  // Reads `feed`'s units (not owned; must outlive the loader).
  DataLoader(std::unique_ptr<SplitReader> reader, WorkFeed* feed, Options options);
  ~DataLoader();

  void Start();
  // The next batch; nullptr after the last one; an error if reading failed.
  // With `starved` (and a feed): when no batch is queued and the loader is
  // waiting for the scheduler's next unit, returns nullptr at once with
  // *starved set, instead of waiting. (A caller holding batches of its own
  // must train them first: the scheduler may be waiting for exactly those
  // to be done before it can say there is no more work.)
  absl::StatusOr<std::unique_ptr<Batch>> Next(bool* starved = nullptr);
  // Next(), waiting at most `within`: nullptr with *timed_out set if no
  // batch came (the loader is still waiting for work).
  absl::StatusOr<std::unique_ptr<Batch>> NextWithin(std::chrono::milliseconds within, bool* timed_out);
  // Stops reading early (e.g. when the job is aborted).
  void Stop();

  uint64_t bytes_per_epoch() const { return feed_ != nullptr ? options_.expected_bytes : reader_->total_bytes(); }
  uint64_t bad_lines() const { return bad_lines_.load(); }

 private:
  void Run();
  // Run() with a feed: returns the reading's status; *stopped if Stop() came first.
  absl::Status ReadUnits(bool* stopped);
  bool Emit(std::unique_ptr<Batch> batch);  // false if stopped
  // With mu_ held and the queue not empty or the reading over: the next
  // batch, nullptr at the end, or the reading's error.
  absl::StatusOr<std::unique_ptr<Batch>> TakeLocked();

  const std::unique_ptr<SplitReader> reader_;
  WorkFeed* const feed_ = nullptr;
  const Options options_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Batch>> queue_;
  bool finished_ = false;
  bool waiting_for_work_ = false;  // the loader's thread is in feed_->Next()
  bool stopped_ = false;
  absl::Status status_;
  std::atomic<uint64_t> bad_lines_{0};
};

}  // namespace sparta

#endif  // SPARTA_WORKER_DATA_DATA_LOADER_H_
