// ColdReader: a thread that runs a shard executor's cold-tier lookups
// (batched RocksDB MultiGet), so that the executor goes on serving requests
// for other shards while a request's cold rows are read. The executor owns
// one; jobs run in submission order and report back by posting to the
// executor's own queue.
//
// Thread-safe: Submit() from any thread; jobs run on the reader's thread.
#ifndef SPARTA_SERVER_COLD_READER_H_
#define SPARTA_SERVER_COLD_READER_H_

#include <functional>
#include <thread>

#include "common/task_queue.h"

namespace sparta {

class ColdReader {
 public:
  ColdReader() : thread_([this] { Run(); }) {}
  // Runs what was submitted, then joins.
  ~ColdReader() { Stop(); }
  ColdReader(const ColdReader&) = delete;
  ColdReader& operator=(const ColdReader&) = delete;

  void Submit(std::function<void()> job) { queue_.Push(std::move(job)); }
  void Stop() {
    queue_.Close();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    while (auto job = queue_.WaitPop()) (*job)();
  }

  TaskQueue<std::function<void()>> queue_;
  std::thread thread_;  // last: starts once the queue exists
};

}  // namespace sparta

#endif  // SPARTA_SERVER_COLD_READER_H_
