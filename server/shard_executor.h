// ShardExecutor: one thread that owns a fixed set of virtual shards and is the
// only thread that ever touches their rows. The I/O thread routes each key of
// a request to the executor that owns the key's shard; executors apply pulls
// and pushes in arrival order without locks on the rows.
//
// Rows also go to the server's RowStore when it has one: with durability
// "wal" every push's rows are written (and logged) before the request
// completes; otherwise changed rows are remembered and written in one batch
// by PersistChanged() when a checkpoint is cut.
//
// With `sum_steps` (worker.consistency bsp) a push carrying a step clock is
// not applied at once: its gradients are added to the step's sums, which are
// applied together when the first request of a later step (or one without a
// clock, or a control task) reaches the executor. Under BSP no worker sends
// a request of step t+1 before every worker's step-t push is acknowledged,
// so by then the sums are complete, and a pull of step t never sees a
// partial step.
//
// Submit() is thread-safe and lock-free (a TaskQueue); everything else
// happens on the executor's thread, except LoadRow(), which is for filling
// the shards before Start().
// Finished requests are posted to `done` for the I/O thread to answer.
#ifndef SPARTA_SERVER_SHARD_EXECUTOR_H_
#define SPARTA_SERVER_SHARD_EXECUTOR_H_

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "common/mailbox.h"
#include "common/task_queue.h"
#include "absl/status/statusor.h"
#include "server/request.h"
#include "server/row_store.h"
#include "server/table_shard.h"

namespace sparta {

class ShardExecutor {
 public:
  // Owns `num_local_shards` shards; finished requests go to `done`.
  // Executor `index` of `count` owns the virtual shards s with
  // s % count == index. `store` (may be null) outlives the executor.
  ShardExecutor(int index, int count, uint32_t num_shards, Mailbox<std::shared_ptr<Request>>* done,
                RowStore* store, bool wal, bool sum_steps = false);
  ~ShardExecutor();  // drains nothing: call Stop() first
  ShardExecutor(const ShardExecutor&) = delete;
  ShardExecutor& operator=(const ShardExecutor&) = delete;

  void Start();
  void Stop();
  void Submit(ShardTask task);

  // Executor thread (from a control task): writes every row changed since
  // the last call to the store. Returns the number of rows written.
  absl::StatusOr<size_t> PersistChanged();

  // Sets a row of `shard` (weights and optimizer state) as read from a
  // checkpoint or a snapshot. Before Start(), or on the executor's thread.
  void LoadRow(const TableEntry& table, uint32_t shard, uint64_t key, std::span<const float> row);

  // Executor thread: copies every row of `shard` of `table`.
  void CopyRows(uint32_t shard, const TableEntry& table, std::vector<uint64_t>* keys, std::vector<float>* rows,
                uint32_t* stride);

  // Executor thread: adds the rows of each table held here that are in the
  // store (see TableShard::stored_rows()) to (*rows)[table id], growing it
  // as needed.
  void CountRowsByTable(std::vector<uint64_t>* rows) const;

  // Rows held by this executor's shards; safe to read from any thread.
  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }
  // Tasks submitted and not yet started (any thread).
  int index() const { return index_; }
  int64_t queue_depth() const { return queued_.load(std::memory_order_relaxed); }

 private:
  void Run();
  void Execute(ShardTask& task);
  // Adds a push's gradients to the pending step sums.
  void AddPending(ShardTask& task);
  // Applies the pending step sums of every shard.
  void ApplyPendingSteps();
  // Writes `batch_` to the store (durability wal); logs a failure.
  absl::Status WriteWal();
  TableShard& Shard(uint32_t local, const TableEntry& table);

  const int index_;
  const int count_;
  RowStore* const store_;
  const bool wal_;
  const bool sum_steps_;
  uint64_t pending_clock_ = 0;  // step of the pending sums; 0: none
  RowBatch batch_;
  Mailbox<std::shared_ptr<Request>>* const done_;
  // shards_[local][table id]; created on first use.
  std::vector<std::vector<std::unique_ptr<TableShard>>> shards_;
  std::thread thread_;
  TaskQueue<ShardTask> queue_;
  std::atomic<uint64_t> rows_{0};
  std::atomic<int64_t> queued_{0};
  std::vector<float*> row_scratch_;  // Execute()'s rows, reused across tasks
  std::vector<float> grad_scratch_;  // one fp16 gradient row widened to fp32
  // The fp32 gradient of key i of a push, widened from fp16 if need be.
  const float* GradOf(const Request& r, size_t position, uint32_t dim);
  std::vector<uint32_t> order_scratch_;  // durability "wal": rows in storage order
};

}  // namespace sparta

#endif  // SPARTA_SERVER_SHARD_EXECUTOR_H_
