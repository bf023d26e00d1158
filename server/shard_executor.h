// ShardExecutor: one thread that owns a fixed set of virtual shards and is the
// only thread that ever touches their rows. The I/O thread routes each key of
// a request to the executor that owns the key's shard; executors apply pulls
// and pushes in arrival order without locks on the rows.
//
// Submit() is thread-safe and lock-free (a TaskQueue); everything else
// happens on the executor's thread.
// Finished requests are posted to `done` for the I/O thread to answer.
#ifndef SPARTA_SERVER_SHARD_EXECUTOR_H_
#define SPARTA_SERVER_SHARD_EXECUTOR_H_

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "common/mailbox.h"
#include "common/task_queue.h"
#include "server/request.h"
#include "server/table_shard.h"

namespace sparta {

class ShardExecutor {
 public:
  // Owns `num_local_shards` shards; finished requests go to `done`.
  ShardExecutor(int index, uint32_t num_local_shards, Mailbox<std::shared_ptr<Request>>* done);
  ~ShardExecutor();  // drains nothing: call Stop() first
  ShardExecutor(const ShardExecutor&) = delete;
  ShardExecutor& operator=(const ShardExecutor&) = delete;

  void Start();
  void Stop();
  void Submit(ShardTask task);

  // Rows held by this executor's shards; safe to read from any thread.
  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }

 private:
  void Run();
  void Execute(ShardTask& task);
  TableShard& Shard(uint32_t local, const TableEntry& table);

  const int index_;
  Mailbox<std::shared_ptr<Request>>* const done_;
  // shards_[local][table id]; created on first use.
  std::vector<std::vector<std::unique_ptr<TableShard>>> shards_;
  std::thread thread_;
  TaskQueue<ShardTask> queue_;
  std::atomic<uint64_t> rows_{0};
  std::vector<float*> row_scratch_;  // Execute()'s rows, reused across tasks
  std::vector<float> grad_scratch_;  // one fp16 gradient row widened to fp32
};

}  // namespace sparta

#endif  // SPARTA_SERVER_SHARD_EXECUTOR_H_
