#include "server/shard_executor.h"

#include <algorithm>
#include <cstring>

#include "common/half.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace sparta {

ShardExecutor::ShardExecutor(int index, int count, uint32_t num_shards, Mailbox<std::shared_ptr<Request>>* done,
                             RowStore* store, bool wal, bool sum_steps)
    : index_(index),
      count_(count),
      store_(store),
      wal_(wal),
      sum_steps_(sum_steps),
      done_(done),
      shards_((num_shards + count - 1) / count) {}

ShardExecutor::~ShardExecutor() { Stop(); }

void ShardExecutor::Start() { thread_ = std::thread([this] { Run(); }); }

void ShardExecutor::Stop() {
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

void ShardExecutor::Submit(ShardTask task) {
  queued_.fetch_add(1, std::memory_order_relaxed);
  queue_.Push(std::move(task));
}

void ShardExecutor::Run() {
  while (true) {
    std::optional<ShardTask> task = queue_.WaitPop();
    if (task) queued_.fetch_sub(1, std::memory_order_relaxed);
    if (!task) return;  // closed and drained
    if (task->control) {
      // A checkpoint cut or a snapshot must see whole steps applied.
      if (pending_clock_ != 0) ApplyPendingSteps();
      task->control();
      continue;
    }
    Execute(*task);
    // The last executor to finish hands the request back for its reply.
    if (task->request->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) done_->Post(std::move(task->request));
  }
}

TableShard& ShardExecutor::Shard(uint32_t local, const TableEntry& table) {
  auto& tables = shards_[local];
  const uint32_t id = table.spec.id();
  if (tables.size() <= id) tables.resize(id + 1);
  if (!tables[id]) {
    tables[id] = std::make_unique<TableShard>(local * count_ + index_, &table.spec, table.optimizer.get());
  }
  return *tables[id];
}

void ShardExecutor::LoadRow(const TableEntry& table, uint32_t shard, uint64_t key, std::span<const float> row) {
  TableShard& s = Shard(shard / count_, table);
  const size_t before = s.rows();
  s.Load(key, row);
  rows_.fetch_add(s.rows() - before, std::memory_order_relaxed);
}

void ShardExecutor::CopyRows(uint32_t shard, const TableEntry& table, std::vector<uint64_t>* keys,
                             std::vector<float>* rows, uint32_t* stride) {
  TableShard& s = Shard(shard / count_, table);
  *stride = s.stride();
  keys->reserve(s.rows());
  rows->reserve(s.rows() * s.stride());
  s.ForEach([&](uint64_t key, const float* row) {
    keys->push_back(key);
    rows->insert(rows->end(), row, row + s.stride());
  });
}

void ShardExecutor::CountRowsByTable(std::vector<uint64_t>* rows) const {
  for (const auto& tables : shards_) {
    for (const auto& shard : tables) {
      if (!shard) continue;
      if (rows->size() <= shard->table_id()) rows->resize(shard->table_id() + 1, 0);
      (*rows)[shard->table_id()] += shard->stored_rows();
    }
  }
}

absl::StatusOr<size_t> ShardExecutor::PersistChanged() {
  if (store_ == nullptr) return 0;
  size_t written = 0;
  for (auto& tables : shards_) {
    for (auto& shard : tables) {
      if (!shard || shard->dirty() == 0) continue;
      rocksdb::ColumnFamilyHandle* column = store_->column(shard->table_id());
      if (column == nullptr) return absl::InternalError("a table without a column family");
      written += shard->Persist(column, &batch_);
      // Bounded batches: a checkpoint of millions of rows must not build
      // one multi-GB WriteBatch.
      if (batch_.count() >= 65536) SPARTA_RETURN_IF_ERROR(store_->Write(&batch_));
    }
  }
  SPARTA_RETURN_IF_ERROR(store_->Write(&batch_));
  return written;
}

const float* ShardExecutor::GradOf(const Request& r, size_t position, uint32_t dim) {
  const size_t at = position * dim;
  if (r.dtype != pb::FP16) return r.grads.data() + at;
  grad_scratch_.resize(dim);
  HalvesToFloats(r.grads_half.data() + at, grad_scratch_.data(), dim);
  return grad_scratch_.data();
}

void ShardExecutor::AddPending(ShardTask& task) {
  Request& r = *task.request;
  const uint32_t dim = r.table->spec.dim();
  for (size_t i = 0; i < task.positions.size(); ++i) {
    Shard(task.local_shards[i], *r.table).AddPending(r.keys[task.positions[i]], GradOf(r, task.positions[i], dim));
  }
  pending_clock_ = r.message.header.clock();
}

void ShardExecutor::ApplyPendingSteps() {
  const bool track_changes = store_ != nullptr && !wal_;
  uint64_t created = 0;
  for (auto& tables : shards_) {
    for (auto& shard : tables) {
      if (!shard || !shard->has_pending()) continue;
      rocksdb::ColumnFamilyHandle* column = wal_ && store_ != nullptr ? store_->column(shard->table_id()) : nullptr;
      created += shard->ApplyPending(track_changes, [&](uint64_t key, const float* row) {
        if (column != nullptr) batch_.Put(column, shard->shard(), key, row, shard->stride());
      });
    }
  }
  rows_.fetch_add(created, std::memory_order_relaxed);
  pending_clock_ = 0;
  if (wal_ && store_ != nullptr) (void)WriteWal();
}

absl::Status ShardExecutor::WriteWal() {
  return store_->Write(&batch_);  // the store logs its failure once
}

void ShardExecutor::Execute(ShardTask& task) {
  Request& r = *task.request;
  const uint32_t dim = r.table->spec.dim();
  const bool is_push = r.message.header.type() != pb::PULL;  // PUSH or REPLICATE
  if (sum_steps_) {
    const uint64_t clock = r.message.header.clock();
    if (pending_clock_ != 0 && (clock == 0 || clock > pending_clock_)) ApplyPendingSteps();
    if (is_push && clock != 0) return AddPending(task);
  }
  const size_t n = task.positions.size();
  // Random keys miss the cache at every step: first the hash-map slot, then
  // the row. So the work is done in two passes, each prefetching a few keys
  // ahead: find (or create) every row, then apply or copy every row.
  constexpr size_t kLookAhead = 8;
  uint64_t created = 0;
  // In "checkpoint" durability changed rows are remembered for the next
  // checkpoint; in "wal" they are written right below instead.
  const bool track_changes = is_push && store_ != nullptr && !wal_;
  row_scratch_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (i + kLookAhead < n) {
      Shard(task.local_shards[i + kLookAhead], *r.table).Prefetch(r.keys[task.positions[i + kLookAhead]]);
    }
    row_scratch_[i] = Shard(task.local_shards[i], *r.table)
                          .FindOrCreate(r.keys[task.positions[i]], &created, track_changes);
  }
  const size_t row_bytes = size_t{Shard(task.local_shards[0], *r.table).stride()} * sizeof(float);
  for (size_t i = 0; i < n; ++i) {
    if (i + kLookAhead < n) {
      const char* ahead = reinterpret_cast<const char*>(row_scratch_[i + kLookAhead]);
      for (size_t line = 0; line < row_bytes; line += 64) __builtin_prefetch(ahead + line, 1);
    }
    const size_t at = size_t{task.positions[i]} * dim;
    float* row = row_scratch_[i];
    if (is_push) {
      r.table->optimizer->Apply(row, GradOf(r, task.positions[i], dim), dim);
    } else if (r.dtype == pb::FP16) {
      FloatsToHalves(row, r.half_values.data() + at, dim);
    } else {
      std::memcpy(r.values.data() + at, row, dim * sizeof(float));
    }
  }
  rows_.fetch_add(created, std::memory_order_relaxed);
  if (is_push && store_ != nullptr && wal_) {
    rocksdb::ColumnFamilyHandle* column = store_->column(r.table->spec.id());
    // In (shard, key) order, as RocksDB stores them: its memtable inserts a
    // sorted batch several times faster than one in request order.
    order_scratch_.resize(n);
    for (uint32_t i = 0; i < n; ++i) order_scratch_[i] = i;
    auto sort_key = [&](uint32_t i) { return std::pair(task.local_shards[i], r.keys[task.positions[i]]); };
    std::sort(order_scratch_.begin(), order_scratch_.end(),
              [&](uint32_t a, uint32_t b) { return sort_key(a) < sort_key(b); });
    for (uint32_t i : order_scratch_) {
      const TableShard& shard = Shard(task.local_shards[i], *r.table);
      batch_.Put(column, shard.shard(), r.keys[task.positions[i]], row_scratch_[i], shard.stride());
    }
    if (!WriteWal().ok()) r.not_durable.store(true);
  }
}

}  // namespace sparta
