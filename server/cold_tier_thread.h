// ColdTierThread: a thread that runs a shard executor's cold-tier I/O: the
// batched RocksDB lookups of cold rows and the writes of evicted rows, so
// that the executor goes on serving requests (for other shards while a read
// runs, for any shard while a write does). The executor owns one.
//
// Jobs run one at a time in submission order, which is what keeps the tier
// exact: a lookup submitted after an eviction's write runs after it and
// finds the rows it wrote. Jobs report back by posting to the executor's
// own queue.
//
// Thread-safe: Submit() and Stop() from any thread; jobs run on this thread.
#ifndef SPARTA_SERVER_COLD_TIER_THREAD_H_
#define SPARTA_SERVER_COLD_TIER_THREAD_H_

#include <pthread.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <rocksdb/perf_level.h>

#include "common/task_queue.h"

namespace sparta {

class ColdTierThread {
 public:
  // `name` (at most 15 characters are kept) names the thread for top -H and perf.
  explicit ColdTierThread(const std::string& name)
      : thread_([this, name] {
          pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
          // RocksDB counts per-thread statistics by default: a thread-local
          // access on every key comparison of a memtable insert (perf: 4% of
          // a tiered server's CPU). Nothing reads them.
          rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
          Run();
        }) {}
  // Runs what was submitted, then joins.
  ~ColdTierThread() { Stop(); }
  ColdTierThread(const ColdTierThread&) = delete;
  ColdTierThread& operator=(const ColdTierThread&) = delete;

  // False once Stop() has begun: the job will not run, and the caller does
  // the work itself (an eviction's write must not be lost on the way out).
  // It returns only once the jobs queued before have run, so the caller's
  // work never overlaps one of them (the cold tier's logs are not
  // thread-safe).
  bool Submit(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopped_) {
      drained_cv_.wait(lock, [this] { return drained_; });
      return false;
    }
    queue_.Push(std::move(job));
    return true;
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
    }
    queue_.Close();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    while (auto job = queue_.WaitPop()) (*job)();
    std::lock_guard<std::mutex> lock(mu_);
    drained_ = true;
    drained_cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable drained_cv_;
  bool stopped_ = false;  // guarded by mu_
  bool drained_ = false;  // guarded by mu_: the last job has run
  TaskQueue<std::function<void()>> queue_;
  std::thread thread_;  // last: starts once the queue exists
};

}  // namespace sparta

#endif  // SPARTA_SERVER_COLD_TIER_THREAD_H_
