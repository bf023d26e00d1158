#include "server/shard_executor.h"

#include <cstring>

namespace sparta {

ShardExecutor::ShardExecutor(int index, uint32_t num_local_shards, Mailbox<std::shared_ptr<Request>>* done)
    : index_(index), done_(done), shards_(num_local_shards) {}

ShardExecutor::~ShardExecutor() { Stop(); }

void ShardExecutor::Start() { thread_ = std::thread([this] { Run(); }); }

void ShardExecutor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void ShardExecutor::Submit(ShardTask task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ShardExecutor::Run() {
  std::deque<ShardTask> batch;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_ && queue_.empty()) return;
      batch.swap(queue_);
    }
    for (ShardTask& task : batch) {
      Execute(task);
      // The last executor to finish hands the request back for its reply.
      if (task.request->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) done_->Post(std::move(task.request));
    }
    batch.clear();
  }
}

TableShard& ShardExecutor::Shard(uint32_t local, const TableEntry& table) {
  auto& tables = shards_[local];
  const uint32_t id = table.spec.id();
  if (tables.size() <= id) tables.resize(id + 1);
  if (!tables[id]) tables[id] = std::make_unique<TableShard>(&table.spec, table.optimizer.get());
  return *tables[id];
}

void ShardExecutor::Execute(ShardTask& task) {
  Request& r = *task.request;
  const uint32_t dim = r.table->spec.dim();
  const bool is_push = r.message.header.type() == pb::PUSH;
  uint64_t created = 0, grown = 0;
  // Consecutive keys usually hit different shards; look each one up once.
  for (size_t i = 0; i < task.positions.size(); ++i) {
    const uint32_t pos = task.positions[i];
    TableShard& shard = Shard(task.local_shards[i], *r.table);
    const size_t rows_before = shard.rows();
    const size_t bytes_before = shard.bytes();
    float* row = shard.FindOrCreate(r.keys[pos]);
    created += shard.rows() - rows_before;
    grown += shard.bytes() - bytes_before;
    if (is_push) {
      shard.Apply(row, r.grads.data() + size_t{pos} * dim);
    } else {
      std::memcpy(r.values.data() + size_t{pos} * dim, row, dim * sizeof(float));
    }
  }
  rows_.fetch_add(created, std::memory_order_relaxed);
  bytes_.fetch_add(grown, std::memory_order_relaxed);
}

}  // namespace sparta
