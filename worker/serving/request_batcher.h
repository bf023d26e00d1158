// RequestBatcher: dynamic batching of prediction requests. Requests arrive
// from many connection threads; compute threads take them in arrival order
// and score them together, up to `max_batch` examples, the first request of
// a batch waiting at most `max_delay` for others to join it. A model's
// forward pass over 64 examples costs little more than over one (the rows
// are gathered and the layers multiplied once), so under load batching
// multiplies throughput, and when idle a request waits at most max_delay.
//
// A request whose deadline passes while it waits is answered
// DeadlineExceeded without being computed. A request larger than max_batch
// is computed alone, whole.
//
// Thread-safe. The destructor answers what is still queued (Unavailable)
// and joins the compute threads.
#ifndef SPARTA_WORKER_SERVING_REQUEST_BATCHER_H_
#define SPARTA_WORKER_SERVING_REQUEST_BATCHER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "sparta/sdk/example.h"

namespace sparta {

class RequestBatcher {
 public:
  using Clock = std::chrono::steady_clock;
  struct Scored {
    std::vector<float> probs;  // one per example, in order
    uint64_t version = 0;      // the model version that computed them
  };
  // Scores examples on compute thread `thread` (each thread calls it with
  // its own number, so per-thread state needs no lock).
  using Compute = std::function<absl::StatusOr<Scored>(int thread, std::span<const Example* const> examples)>;
  struct Options {
    int threads = 1;
    size_t max_batch = 64;
    std::chrono::microseconds max_delay{500};
  };

  RequestBatcher(Options options, Compute compute);
  ~RequestBatcher();
  RequestBatcher(const RequestBatcher&) = delete;
  RequestBatcher& operator=(const RequestBatcher&) = delete;

  using Done = std::function<void(absl::StatusOr<Scored>)>;
  // Queues `examples`; `done` is called once with their probabilities (or
  // why there are none), on a compute thread, or on this thread if the
  // batcher is stopping. It must not block: the batch's other requests wait.
  void Submit(std::vector<Example> examples, Clock::time_point deadline, Done done);
  // The same, waited for through a future.
  std::future<absl::StatusOr<Scored>> Submit(std::vector<Example> examples, Clock::time_point deadline);

  // Batches computed and examples in them so far (for /metrics).
  uint64_t batches() const;
  uint64_t examples() const;

 private:
  struct Pending {
    std::vector<Example> examples;
    Clock::time_point arrived, deadline;
    Done answer;
  };
  void Run(int thread);
  // Takes the next batch off the queue (under mu_); empty when stopping.
  std::vector<Pending> TakeBatch(std::unique_lock<std::mutex>& lock);

  const Options options_;
  const Compute compute_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  size_t queued_examples_ = 0;
  bool stopping_ = false;
  uint64_t batches_ = 0, examples_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_REQUEST_BATCHER_H_
