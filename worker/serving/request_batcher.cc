#include "worker/serving/request_batcher.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sparta {

RequestBatcher::RequestBatcher(Options options, Compute compute)
    : options_(options), compute_(std::move(compute)) {
  for (int t = 0; t < std::max(1, options_.threads); ++t) threads_.emplace_back([this, t] { Run(t); });
}

RequestBatcher::~RequestBatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  for (Pending& p : queue_) p.answer(absl::UnavailableError("the server is shutting down"));
}

void RequestBatcher::Submit(std::vector<Example> examples, Clock::time_point deadline, Done done) {
  Pending p{.examples = std::move(examples), .arrived = Clock::now(), .deadline = deadline, .answer = std::move(done)};
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) {
      lock.unlock();
      p.answer(absl::UnavailableError("the server is shutting down"));
      return;
    }
    queued_examples_ += p.examples.size();
    queue_.push_back(std::move(p));
  }
  cv_.notify_all();
}

std::future<absl::StatusOr<RequestBatcher::Scored>> RequestBatcher::Submit(std::vector<Example> examples,
                                                                          Clock::time_point deadline) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<Scored>>>();
  auto future = promise->get_future();
  Submit(std::move(examples), deadline, [promise](absl::StatusOr<Scored> scored) { promise->set_value(std::move(scored)); });
  return future;
}

std::vector<RequestBatcher::Pending> RequestBatcher::TakeBatch(std::unique_lock<std::mutex>& lock) {
  cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
  if (stopping_) return {};
  // The oldest request waits for company until it is max_delay old, or
  // until a full batch is queued.
  const Clock::time_point until = queue_.front().arrived + options_.max_delay;
  cv_.wait_until(lock, until, [&] { return stopping_ || queued_examples_ >= options_.max_batch; });
  if (stopping_ || queue_.empty()) return {};  // another thread took them
  std::vector<Pending> batch;
  size_t examples = 0;
  while (!queue_.empty() &&
         (batch.empty() || examples + queue_.front().examples.size() <= options_.max_batch)) {
    examples += queue_.front().examples.size();
    queued_examples_ -= queue_.front().examples.size();
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return batch;
}

void RequestBatcher::Run(int thread) {
  std::vector<const Example*> examples;
  for (;;) {
    std::vector<Pending> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      batch = TakeBatch(lock);
      if (batch.empty() && stopping_) return;
    }
    if (batch.empty()) continue;
    // Those already too late are answered, not computed.
    const Clock::time_point now = Clock::now();
    std::vector<Pending*> live;
    examples.clear();
    for (Pending& p : batch) {
      if (now >= p.deadline) {
        p.answer(absl::DeadlineExceededError("the request's deadline passed while it waited"));
        continue;
      }
      live.push_back(&p);
      for (const Example& ex : p.examples) examples.push_back(&ex);
    }
    if (live.empty()) continue;
    absl::StatusOr<Scored> scored = compute_(thread, examples);
    if (scored.ok() && scored->probs.size() != examples.size()) {
      scored = absl::InternalError(absl::StrCat("the model scored ", scored->probs.size(), " of ", examples.size(),
                                                " examples"));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++batches_;
      examples_ += examples.size();
    }
    size_t at = 0;
    for (Pending* p : live) {
      if (!scored.ok()) {
        // Each answer gets a status of its own: copies of one share their
        // message through a count that Abseil (not instrumented) updates, so
        // to ThreadSanitizer the copy freed here races the HTTP thread that
        // read its own copy's message (a report seen when a serving cluster
        // went away). A fresh status per request shares nothing.
        p->answer(absl::Status(scored.status().code(), scored.status().message()));
        continue;
      }
      Scored mine{.probs = std::vector<float>(scored->probs.begin() + at,
                                              scored->probs.begin() + at + p->examples.size()),
                  .version = scored->version};
      at += p->examples.size();
      p->answer(std::move(mine));
    }
  }
}

uint64_t RequestBatcher::batches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_;
}

uint64_t RequestBatcher::examples() const {
  std::lock_guard<std::mutex> lock(mu_);
  return examples_;
}

}  // namespace sparta
