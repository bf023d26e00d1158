#include "server/shard_executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>

#include <pthread.h>
#include <rocksdb/perf_level.h>

#include "common/half.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "absl/strings/str_cat.h"
#include "server/initializer.h"

namespace sparta {

ShardExecutor::ShardExecutor(int index, int count, uint32_t num_shards, Mailbox<std::shared_ptr<Request>>* done,
                             const Options& options)
    : index_(index),
      count_(count),
      store_(options.store),
      wal_(options.wal),
      sum_steps_(options.sum_steps),
      budget_(options.memory_budget),
      counter_share_(options.counter_share),
      tier_(new TableTierStats[kMaxTables]),
      tier_used_(new std::atomic<bool>[kMaxTables]()),
      row_cost_(new std::atomic<size_t>[kMaxTables]()),
      // Rows go cold only under a budget: without one there is nothing to
      // read and no cold-tier thread.
      async_reads_(options.async_reads && !options.sum_steps && options.store != nullptr &&
                   options.memory_budget != 0),
      blocked_((num_shards + count - 1) / count, 0),
      shard_rows_(new std::atomic<int64_t>[(num_shards + count - 1) / count]()),
      walk_((num_shards + count - 1) / count, 0),
      log_changes_(options.log_changes && options.store != nullptr),
      read_only_(options.read_only),
      done_(done),
      shards_((num_shards + count - 1) / count) {
  if (async_reads_) tier_thread_ = std::make_unique<ColdTierThread>(absl::StrCat("cold-tier-", index));
  if (tier_thread_ && !wal_ && options.cold_logs) {
    logs_ = std::make_unique<ColdLogs>(store_, store_->dir() + "/cold-logs", index,
                                       static_cast<uint64_t>(kLogIndexShare * static_cast<double>(budget_)));
  }
  if (log_changes_) batch_.LogTo(&changes_);
}

ShardExecutor::~ShardExecutor() { Stop(); }

void ShardExecutor::Start() {
  thread_ = std::thread([this] {
    // Named, so that top -H and perf tell a busy executor from its tier thread.
    pthread_setname_np(pthread_self(), absl::StrCat("executor-", index_).substr(0, 15).c_str());
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);  // see ColdTierThread
    Run();
  });
}

void ShardExecutor::Stop() {
  // Reads in flight come back (as wake tasks) before the queue closes, and
  // writes in flight land; an eviction after this writes its rows itself.
  if (tier_thread_) tier_thread_->Stop();
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

void ShardExecutor::Submit(ShardTask task) {
  queued_.fetch_add(1, std::memory_order_relaxed);
  queue_.Push(std::move(task));
}

bool ShardExecutor::TryRunHere(ShardTask& task, bool* finished) {
  // Only the I/O thread submits requests, and it is the caller: with none
  // queued, nothing that must run before this one is waiting.
  if (queued_.load(std::memory_order_relaxed) != 0) return false;
  std::unique_lock<std::mutex> lock(run_mu_, std::try_to_lock);
  if (!lock.owns_lock() || queued_.load(std::memory_order_relaxed) != 0 || !parked_.empty()) return false;
  finished_here_ = false;
  running_here_ = true;
  RunTask(std::move(task));
  Housekeeping();
  running_here_ = false;
  *finished = finished_here_;
  return true;
}

void ShardExecutor::Run() {
  while (true) {
    std::optional<ShardTask> task = queue_.WaitPop();
    if (!task) return;  // closed and drained
    // Shared with TryRunHere(): one thread at a time runs this executor's work.
    std::lock_guard<std::mutex> lock(run_mu_);
    if (task->wake) {
      task->wake();
      DrainParked();
      Housekeeping();
      continue;
    }
    queued_.fetch_sub(1, std::memory_order_relaxed);
    if (MustWait(*task)) {
      std::shared_ptr<ColdRead> ahead = ReadAhead(*task);
      Park(*std::move(task), std::move(ahead));
      continue;
    }
    RunTask(*std::move(task));
    Housekeeping();
  }
}

void ShardExecutor::RunTask(ShardTask task) {
  if (task.control) {
    // A checkpoint cut or a snapshot must see whole steps applied.
    if (pending_clock_ != 0) ApplyPendingSteps();
    task.control();
    return;
  }
  switch (Execute(task, nullptr)) {
    case Outcome::kNeedsRead:
      return Park(std::move(task), std::move(pending_read_));
    case Outcome::kFailed:
      task.request->read_failed.store(true);
      [[fallthrough]];
    case Outcome::kDone:
      return Finish(task);
  }
}

void ShardExecutor::Finish(ShardTask& task) {
  // The last executor to finish hands the request back for its reply (to
  // the caller of TryRunHere(), who answers it at once).
  if (task.request->pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (running_here_) {
    finished_here_ = true;
    return;
  }
  done_->Post(std::move(task.request));
}

void ShardExecutor::Housekeeping() {
  KeepToBudget();
  if (any_ttl_ && ++tasks_since_expiry_ >= kTasksPerExpiry) ExpireSome();
}

bool ShardExecutor::MustWait(const ShardTask& task) const {
  if (parked_.empty()) return false;
  if (task.control || parked_controls_ > 0) return true;
  for (uint32_t local : task.local_shards) {
    if (blocked_[local] != 0) return true;
  }
  return false;
}

void ShardExecutor::Park(ShardTask task, std::shared_ptr<ColdRead> read) {
  Parked p;
  if (task.control) {
    ++parked_controls_;
  } else {
    p.locals = task.local_shards;
    std::sort(p.locals.begin(), p.locals.end());
    p.locals.erase(std::unique(p.locals.begin(), p.locals.end()), p.locals.end());
    for (uint32_t local : p.locals) ++blocked_[local];
  }
  p.task = std::move(task);
  p.read = std::move(read);
  if (p.read) StartRead(p.read);
  parked_.push_back(std::move(p));
}

void ShardExecutor::StartRead(const std::shared_ptr<ColdRead>& read) {
  auto job = [this, read] {
    const auto start = std::chrono::steady_clock::now();
    // After a failed write of evicted rows the store lacks some: nothing
    // read from it may be used.
    read->status = failed_.load(std::memory_order_acquire)
                       ? failure()
                       : ReadFromTier(read->table, read->shards, read->keys, read->record, read->rows.data(),
                                      &read->found);
    read->nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
                      .count();
    ShardTask back;
    back.wake = [read] { read->done = true; };
    queue_.Push(std::move(back));
  };
  // Stopping: read here, so that the parked request still completes.
  if (!tier_thread_->Submit(job)) job();
}

std::shared_ptr<ShardExecutor::ColdRead> ShardExecutor::ReadAhead(const ShardTask& task) {
  // A request behind a parked one used to start its read only when its turn
  // came, so the executor sat idle through every read of a stream of
  // requests that share shards (a worker's batches all do). Reading its
  // cold rows as it arrives overlaps them with the work ahead of it.
  //
  // Exact: a row this read finds is used only if its key is still cold when
  // the request runs (ResolveMisses), and while the request is parked its
  // shards are blocked: no row of theirs is evicted or expired, so a key
  // cold then was cold all along and its stored row is the one read. Keys
  // that tasks ahead bring back meanwhile are hot by then and read from
  // DRAM. Behind a parked control task (a cut, a restore, a shard moving),
  // which may change the store, nothing is read ahead.
  if (!async_reads_ || task.control || parked_controls_ > 0 || task.request->table == nullptr) return nullptr;
  const Request& r = *task.request;
  FindRows(r, task);
  CollectColdMisses(r, task);
  if (lookup_.empty()) return nullptr;
  const uint32_t id = r.table->spec.id();
  Bump(tier_[id].cold_reads_ahead, lookup_keys_.size());
  return ReadOfLookups(id, shard_scratch_[lookup_[0]]->record_floats());
}

void ShardExecutor::FindRows(const Request& r, const ShardTask& task) {
  const TableEntry& table = *r.table;
  const size_t n = task.positions.size();
  slots_.resize(n);
  shard_scratch_.resize(n);
  misses_.clear();
  for (size_t i = 0; i < n; ++i) {
    if (i + kLookAhead < n) {
      Shard(task.local_shards[i + kLookAhead], table).Prefetch(r.keys[task.positions[i + kLookAhead]]);
    }
    TableShard& s = Shard(task.local_shards[i], table);
    shard_scratch_[i] = &s;
    slots_[i] = s.FindSlot(r.keys[task.positions[i]]);
    if (slots_[i] == TableShard::kNoSlot) misses_.push_back(static_cast<uint32_t>(i));
  }
}

void ShardExecutor::CollectColdMisses(const Request& r, const ShardTask& task) {
  lookup_.clear();
  lookup_shards_.clear();
  lookup_keys_.clear();
  for (uint32_t i : misses_) {
    const TableShard& s = *shard_scratch_[i];
    const uint64_t key = r.keys[task.positions[i]];
    if (!s.MayBeCold(key)) continue;
    lookup_.push_back(i);
    lookup_shards_.push_back(s.shard());
    lookup_keys_.push_back(key);
  }
}

std::shared_ptr<ShardExecutor::ColdRead> ShardExecutor::ReadOfLookups(uint32_t table, uint32_t record) {
  auto read = std::make_shared<ColdRead>();
  read->table = table;
  read->record = record;
  read->shards = lookup_shards_;
  read->keys = lookup_keys_;
  read->rows.resize(lookup_keys_.size() * size_t{record});
  return read;
}

void ShardExecutor::DrainParked() {
  // In order: a task runs once its read is back and no earlier parked task
  // touches any of its shards (or is a control task, which holds up all).
  std::fill(walk_.begin(), walk_.end(), 0);
  bool barrier = false;
  for (auto it = parked_.begin(); it != parked_.end();) {
    const bool control = static_cast<bool>(it->task.control);
    bool ready = !barrier && !(it->read && !it->read->done) && (!control || it == parked_.begin());
    for (size_t i = 0; ready && i < it->locals.size(); ++i) ready = walk_[it->locals[i]] == 0;
    if (!ready) {
      barrier |= control;
      for (uint32_t local : it->locals) walk_[local] = 1;
      ++it;
      continue;
    }
    Parked p = std::move(*it);
    it = parked_.erase(it);
    if (control) {
      --parked_controls_;
      RunTask(std::move(p.task));
      continue;
    }
    for (uint32_t local : p.locals) --blocked_[local];
    if (p.read != nullptr) {
      TableTierStats& stats = tier_[p.read->table];
      Bump(stats.cold_read_ns, static_cast<uint64_t>(p.read->nanos));
      Bump(stats.cold_reads, p.read->keys.size());
      Bump(stats.cold_read_batches, 1);
      if (!p.read->status.ok()) Fail(p.read->status);
    }
    const Outcome outcome = p.read != nullptr && !p.read->status.ok() ? Outcome::kFailed : Execute(p.task, p.read.get());
    if (outcome == Outcome::kNeedsRead) {
      // Rows it had in DRAM when it was parked went cold meanwhile (rare):
      // it reads again, keeping its place.
      for (uint32_t local : p.locals) ++blocked_[local], walk_[local] = 1;
      p.read = std::move(pending_read_);
      StartRead(p.read);
      it = std::next(parked_.insert(it, std::move(p)));
      continue;
    }
    if (outcome == Outcome::kFailed) p.task.request->read_failed.store(true);
    Finish(p.task);
  }
}

ChangeLog::Changes ShardExecutor::CutChanges(uint64_t version, uint64_t base) {
  ChangeLog::Changes changes = changes_.Cut(version, base);
  change_log_bytes_.store(changes_.bytes(), std::memory_order_relaxed);
  return changes;
}

const TableShard* ShardExecutor::FindShard(uint32_t shard, uint32_t id) const {
  const auto& tables = shards_[shard / count_];
  return id < tables.size() ? tables[id].get() : nullptr;
}

absl::Status ShardExecutor::ReadWeights(const TableEntry& table, uint32_t shard, std::span<const uint64_t> keys,
                                        std::vector<float>* weights, std::vector<uint8_t>* found) {
  const uint32_t dim = table.spec.dim();
  weights->resize(keys.size() * dim);
  found->assign(keys.size(), 0);
  const TableShard* s = FindShard(shard, table.spec.id());
  if (s == nullptr) return absl::OkStatus();
  std::vector<uint32_t> cold;  // positions of keys that are not hot
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint32_t slot = s->FindSlot(keys[i]);
    if (slot == TableShard::kNoSlot) {
      cold.push_back(static_cast<uint32_t>(i));
      continue;
    }
    // What the store holds (all a checkpoint would): a row only pulled
    // since it was made is in no checkpoint, and reads as missing.
    if (!s->stored(slot)) continue;
    std::memcpy(weights->data() + i * dim, s->row(slot), dim * sizeof(float));
    (*found)[i] = 1;
  }
  // Without a budget every row is hot: a key that is not was deleted.
  if (cold.empty() || budget_ == 0 || s->cold_rows() == 0) return absl::OkStatus();
  rocksdb::ColumnFamilyHandle* column = store_->column(table.spec.id());
  if (column == nullptr) return absl::InternalError("a table without a column family");
  const uint32_t record = s->record_floats();
  std::vector<uint32_t> shards(cold.size(), shard);
  std::vector<uint64_t> cold_keys(cold.size());
  for (size_t c = 0; c < cold.size(); ++c) cold_keys[c] = keys[cold[c]];
  std::vector<float> rows(cold.size() * record);
  std::vector<uint8_t> in_store;
  SPARTA_RETURN_IF_ERROR(SettledStore()->MultiGet(column, shards, cold_keys, record, rows.data(), &in_store));
  for (size_t c = 0; c < cold.size(); ++c) {
    if (!in_store[c]) continue;
    std::memcpy(weights->data() + size_t{cold[c]} * dim, rows.data() + c * record, dim * sizeof(float));
    (*found)[cold[c]] = 1;
  }
  return absl::OkStatus();
}

absl::Status ShardExecutor::ForEachWeights(const TableEntry& table, uint32_t shard, const WeightsVisitor& visit) {
  const TableShard* s = FindShard(shard, table.spec.id());
  if (s == nullptr) return absl::OkStatus();
  const uint32_t dim = table.spec.dim();
  std::vector<std::pair<uint64_t, uint32_t>> hot;  // (key, slot) of the rows the store holds
  s->ForEach([&](uint64_t key, uint32_t slot) {
    if (s->stored(slot)) hot.emplace_back(key, slot);
  });
  std::sort(hot.begin(), hot.end());
  std::vector<std::pair<uint64_t, std::vector<float>>> cold;
  if (s->cold_rows() > 0 && store_ != nullptr) {
    rocksdb::ColumnFamilyHandle* column = store_->column(table.spec.id());
    if (column == nullptr) return absl::InternalError("a table without a column family");
    SPARTA_RETURN_IF_ERROR(SettledStore()->ForEachRow(column, shard, [&](uint64_t key, std::span<const float> row) {
      if (s->FindSlot(key) == TableShard::kNoSlot) {
        cold.emplace_back(key, std::vector<float>(row.begin(), row.begin() + dim));
      }
    }));
  }
  // Both lists ascend: merged in key order.
  size_t h = 0, c = 0;
  while (h < hot.size() || c < cold.size()) {
    if (c == cold.size() || (h < hot.size() && hot[h].first < cold[c].first)) {
      SPARTA_RETURN_IF_ERROR(visit(hot[h].first, std::span<const float>(s->row(hot[h].second), dim)));
      ++h;
    } else {
      SPARTA_RETURN_IF_ERROR(visit(cold[c].first, cold[c].second));
      ++c;
    }
  }
  return absl::OkStatus();
}

TableShard& ShardExecutor::Shard(uint32_t local, const TableEntry& table) {
  auto& tables = shards_[local];
  const uint32_t id = table.spec.id();
  if (tables.size() <= id) tables.resize(id + 1);
  if (!tables[id]) {
    // Without a budget nothing is evicted, and S3-FIFO's queue of new rows,
    // which only eviction drains, would grow with every key.
    const EvictionPolicy policy = budget_ != 0 ? table.policy.eviction : EvictionPolicy::kLru;
    tables[id] = std::make_unique<TableShard>(local * count_ + index_, &table.spec, table.optimizer.get(),
                                              policy, /*small_chunks=*/budget_ != 0,
                                              /*stamped=*/table.policy.expires());
    any_ttl_ |= table.policy.expires();
    if (logs_ && !table.policy.expires()) logs_->Track(id);
    // In (table, shard) order, the order of their keys in the store: an
    // eviction round then writes ascending runs (see TableShard::Evict()).
    TableShard* made = tables[id].get();
    all_shards_.insert(std::upper_bound(all_shards_.begin(), all_shards_.end(), made,
                                        [](const TableShard* a, const TableShard* b) {
                                          return std::pair(a->table_id(), a->shard()) <
                                                 std::pair(b->table_id(), b->shard());
                                        }),
                       made);
    if (policy_of_.size() <= id) policy_of_.resize(id + 1, nullptr);
    policy_of_[id] = &table.policy;
    if (!tier_used_[id].load(std::memory_order_relaxed)) {
      used_tables_.push_back({id, tables[id]->row_cost()});
      row_cost_[id].store(tables[id]->row_cost(), std::memory_order_relaxed);
      tier_used_[id].store(true, std::memory_order_release);
    }
  }
  return *tables[id];
}

int64_t ShardExecutor::HotBytes() const {
  // RocksDB's indexes and filters grow with the cold rows: each executor
  // carries its part of them, as its budget is its part of the limit.
  int64_t bytes = store_ != nullptr ? static_cast<int64_t>(store_->table_reader_bytes() / count_) : 0;
  if (logs_) bytes += static_cast<int64_t>(logs_->index_bytes());
  for (const auto& [id, row_cost] : used_tables_) {
    bytes += tier_[id].hot_rows.load(std::memory_order_relaxed) * static_cast<int64_t>(row_cost) +
             tier_[id].side_bytes.load(std::memory_order_relaxed);
  }
  return bytes;
}

void ShardExecutor::CountSideBytes() {
  if (log_changes_) change_log_bytes_.store(changes_.bytes(), std::memory_order_relaxed);
  // Only this thread writes side_bytes: a fresh sum per table, stored.
  for (const auto& [id, row_cost] : used_tables_) {
    size_t sum = 0;
    for (const TableShard* s : all_shards_) {
      if (s->table_id() == id) sum += s->side_bytes();
    }
    tier_[id].side_bytes.store(static_cast<int64_t>(sum), std::memory_order_relaxed);
  }
}

void ShardExecutor::KeepToBudget() {
  if (budget_ == 0) return;
  // Side bytes grow by whole generations and capacity doublings, a little
  // at a time: counting them (a pass over every shard) every 64 calls is
  // enough, and keeps a restore's per-row calls cheap.
  if (++calls_since_side_count_ >= 64) {
    calls_since_side_count_ = 0;
    CountSideBytes();
  }
  if (HotBytes() > static_cast<int64_t>(budget_)) EvictToBudget();
}

void ShardExecutor::LoadRow(const TableEntry& table, uint32_t shard, uint64_t key, std::span<const float> row) {
  TableShard& s = Shard(shard / count_, table);
  if (s.Load(key, row, NowStamp(table.policy, nullptr))) {
    CountRows(s, 1);
    Bump(tier_[table.spec.id()].hot_rows, 1);
  }
  KeepToBudget();
}

absl::Status ShardExecutor::DropShard(uint32_t shard) {
  auto& tables = shards_[shard / count_];
  for (auto& owned : tables) {
    if (!owned) continue;
    TableShard* s = owned.get();
    TableTierStats& stats = tier_[s->table_id()];
    const size_t cold = s->cold_rows(), rows = s->rows();
    Bump(stats.hot_rows, -static_cast<int64_t>(rows - cold));
    Bump(stats.cold_rows, -static_cast<int64_t>(cold));
    CountRows(*s, -static_cast<int64_t>(rows));
    if (store_ != nullptr) {
      if (rocksdb::ColumnFamilyHandle* column = store_->column(s->table_id())) batch_.DeleteShard(column, shard);
    }
    all_shards_.erase(std::remove(all_shards_.begin(), all_shards_.end(), s), all_shards_.end());
    owned.reset();
  }
  CountSideBytes();
  if (batch_.count() == 0) return absl::OkStatus();
  absl::Status st = SettledStore()->Write(&batch_);
  if (!st.ok()) Fail(st);  // stale rows left in the cold tier could come back: every request fails
  return st;
}

absl::Status ShardExecutor::CutShard(const std::vector<const TableEntry*>& tables, size_t max_chunk_bytes,
                                     ShardCut* cut) {
  for (const TableEntry* table : tables) {
    TableShard& s = Shard(cut->shard / count_, *table);
    if (const AdmissionCounter* counter = s.admission_counter(); counter != nullptr) {
      SnapshotChunk chunk;
      chunk.kind = SnapshotChunk::Kind::kAdmission;
      chunk.table = table;
      chunk.admission.assign(counter->counters().begin(), counter->counters().end());
      cut->copied.push_back(std::move(chunk));
    }
    const uint32_t stride = s.stride(), record = s.record_floats();
    const size_t copy_bytes = s.rows() * (record * sizeof(float) + sizeof(uint64_t));
    if (store_ != nullptr && (s.cold_rows() > 0 || copy_bytes > 16 * max_chunk_bytes)) {
      // Some rows are only in the store, or the shard is big: the store is
      // brought up to date and the rows read from a snapshot, a chunk at a
      // time. It then holds every row that differs from its key's initial
      // values (a row only pulled is made again, identical, by the replica).
      // A small shard of hot rows is copied from DRAM instead, which spares
      // writing it to the store and reading it back.
      rocksdb::ColumnFamilyHandle* column = store_->column(table->spec.id());
      if (column == nullptr) return absl::InternalError("a table without a column family");
      s.Persist(column, &batch_);
      SPARTA_RETURN_IF_ERROR(SettledStore()->Write(&batch_));
      cut->tables.push_back({table, record});
      continue;
    }
    // Every row is hot, and copied now.
    const size_t max_rows = std::max<size_t>(1, max_chunk_bytes / (record * sizeof(float) + sizeof(uint64_t)));
    SnapshotChunk chunk;
    s.ForEach([&](uint64_t key, uint32_t slot) {
      if (chunk.keys.empty()) {
        chunk.table = table;
        chunk.record = record;
      }
      chunk.keys.push_back(key);
      const float* row = s.row(slot);
      chunk.rows.insert(chunk.rows.end(), row, row + stride);
      if (record > stride) {
        chunk.rows.emplace_back();
        std::memcpy(&chunk.rows.back(), s.stamp_ptr(slot), sizeof(uint32_t));
      }
      if (chunk.keys.size() >= max_rows) cut->copied.push_back(std::exchange(chunk, SnapshotChunk()));
    });
    // A table with no rows here still sends one (empty) part: it names the
    // table, which a server that joined the job has never been told of.
    if (!chunk.keys.empty() || s.rows() == 0) {
      chunk.table = table;
      chunk.record = record;
      cut->copied.push_back(std::move(chunk));
    }
  }
  if (!cut->tables.empty()) cut->snapshot = SettledStore()->TakeSnapshot();
  return absl::OkStatus();
}

bool ShardExecutor::LoadAdmission(const TableEntry& table, uint32_t shard, std::span<const uint8_t> counters) {
  return Shard(shard / count_, table).admission(CounterBytes(table.policy)).Assign(counters);
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
  // A checkpoint holds no expired row: every shard is swept first (workers
  // are paused while a checkpoint is cut, so this stops nothing).
  for (size_t n = 0; any_ttl_ && n < all_shards_.size(); ++n) ExpireSome();
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
      if (batch_.count() >= kBatchRows) SPARTA_RETURN_IF_ERROR(SettledStore()->Write(&batch_));
    }
  }
  SPARTA_RETURN_IF_ERROR(SettledStore()->Write(&batch_));
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
  const TableEntry& table = *r.table;
  const uint32_t dim = table.spec.dim();
  for (size_t i = 0; i < task.positions.size(); ++i) {
    TableShard& shard = Shard(task.local_shards[i], table);
    const uint64_t key = r.keys[task.positions[i]];
    if (!table.policy.admits_every_key() && shard.FindSlot(key) == TableShard::kNoSlot) {
      // Counted as the push arrives, in the same order on every replica.
      const uint32_t count = r.counts.empty() ? 1 : r.counts[task.positions[i]];
      if (Admit(shard, table.policy, key, count)) step_admitted_.insert({shard.shard(), key});
    }
    shard.AddPending(key, GradOf(r, task.positions[i], dim));
  }
  pending_clock_ = r.message.header.clock();
}

void ShardExecutor::ApplyPendingSteps() {
  const bool track_changes = store_ != nullptr && !wal_;
  // Each shard's keys go through the same lookup as a request's: hot, else
  // the store, else new if admitted.
  for (TableShard* shard : all_shards_) {
    if (!shard->has_pending()) continue;
    const std::vector<uint64_t>& keys = shard->pending_keys();
    const uint32_t id = shard->table_id();
    TableTierStats& stats = tier_[id];
    slots_.resize(keys.size());
    misses_.clear();
    for (uint32_t i = 0; i < keys.size(); ++i) {
      slots_[i] = shard->FindSlot(keys[i]);
      if (slots_[i] == TableShard::kNoSlot) misses_.push_back(i);
    }
    lookup_.clear();
    lookup_keys_.clear();
    for (uint32_t i : misses_) {
      if (!shard->MayBeCold(keys[i])) continue;
      lookup_.push_back(i);
      lookup_keys_.push_back(keys[i]);
    }
    if (!lookup_.empty()) {
      lookup_shards_.assign(lookup_.size(), shard->shard());
      const uint32_t record = shard->record_floats();
      if (!ReadCold(id, record)) continue;  // the failure is reported; the step is not applied
      for (size_t j = 0; j < lookup_.size(); ++j) {
        if (!lookup_found_[j]) continue;
        const float* found = lookup_rows_.data() + j * record;
        slots_[lookup_[j]] = shard->Insert(lookup_keys_[j], found, true, StampIn(*shard, found));
        Bump(stats.promoted, 1);
        Bump(stats.hot_rows, 1);
        Bump(stats.cold_rows, -1);
      }
    }
    const bool every_key = AdmitsEveryKey(*shard);
    for (uint32_t i : misses_) {
      if (slots_[i] != TableShard::kNoSlot) continue;
      if (!every_key && !step_admitted_.contains({shard->shard(), keys[i]})) {
        Bump(stats.deferred, 1);
        continue;
      }
      slots_[i] = shard->Insert(keys[i], nullptr, false);
      CountRows(*shard, 1);
      Bump(stats.hot_rows, 1);
      if (!every_key) Bump(stats.admitted, 1);
    }
    rocksdb::ColumnFamilyHandle* column = wal_ && store_ != nullptr ? store_->column(id) : nullptr;
    const TablePolicy& policy = *policy_of_[id];
    // The step's clock is its step: what a bsp push's rows are stamped with.
    const uint32_t now = policy.ttl_steps != 0 ? static_cast<uint32_t>(pending_clock_) : NowStamp(policy, nullptr);
    for (uint32_t& slot : slots_) {
      if (slot != TableShard::kNoSlot && IsStale(*shard, policy, slot, now)) {
        shard->Reinitialize(slot);
        Bump(stats.expired, 1);
      }
    }
    shard->ApplyPending(slots_, track_changes, [&](uint64_t key, uint32_t slot) {
      shard->SetStamp(slot, now);
      if (column == nullptr) return;
      batch_.Put(column, shard->shard(), key, shard->row(slot), shard->stride(), shard->stamp_ptr(slot));
      shard->MarkStored(slot);
    });
  }
  step_admitted_.clear();
  pending_clock_ = 0;
  if (wal_ && store_ != nullptr) (void)WriteWal();
}

absl::Status ShardExecutor::WriteWal() {
  return SettledStore()->Write(&batch_);  // the store logs its failure once
}

bool ShardExecutor::AdmitsEveryKey(const TableShard& shard) const {
  return policy_of_[shard.table_id()]->admits_every_key();
}

size_t ShardExecutor::CounterBytes(const TablePolicy& policy) const {
  return std::max<size_t>(static_cast<size_t>(static_cast<double>(policy.counter_bytes) * counter_share_), 64);
}

bool ShardExecutor::Admit(TableShard& shard, const TablePolicy& policy, uint64_t key, uint32_t count) {
  auto [before, after] = shard.admission(CounterBytes(policy)).Add(key, count);
  if (policy.min_count > 1 && after >= policy.min_count) return true;
  if (policy.probability < 1.0) {
    // One draw per occurrence, a function of (seed, key, occurrence number):
    // every replica draws the same. A saturated count admits.
    if (after >= AdmissionCounter::kMax) return true;
    for (uint32_t j = before; j < after; ++j) {
      if (UnitUniform(Mix64(key ^ Mix64(policy.seed ^ (0xa0761d6478bd642fULL * (j + 1))))) < policy.probability) {
        return true;
      }
    }
  }
  return false;
}

bool ShardExecutor::ReadCold(uint32_t table, uint32_t stride) {
  TableTierStats& stats = tier_[table];
  lookup_rows_.resize(lookup_keys_.size() * size_t{stride});
  const auto start = std::chrono::steady_clock::now();
  const absl::Status st =
      SettledStore()->MultiGet(store_->column(table), lookup_shards_, lookup_keys_, stride, lookup_rows_.data(), &lookup_found_);
  Bump(stats.cold_read_ns, static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                     std::chrono::steady_clock::now() - start)
                                                     .count()));
  Bump(stats.cold_reads, lookup_keys_.size());
  Bump(stats.cold_read_batches, 1);
  if (!st.ok()) Fail(st);
  return st.ok();
}

uint32_t ShardExecutor::NowStamp(const TablePolicy& policy, const Request* r) {
  if (policy.ttl_steps != 0) {
    // A push is stamped with its worker's step (a replica reads the same
    // one); anything else with the latest step seen.
    if (r != nullptr && r->message.header.step() != 0) {
      latest_step_ = std::max(latest_step_, r->message.header.step());
      return static_cast<uint32_t>(r->message.header.step());
    }
    return static_cast<uint32_t>(latest_step_);
  }
  if (r != nullptr && r->message.header.apply_time() > 0) return static_cast<uint32_t>(r->message.header.apply_time());
  return static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

bool ShardExecutor::IsStale(const TableShard& shard, const TablePolicy& policy, uint32_t slot, uint32_t now) const {
  const uint64_t ttl = policy.ttl_steps != 0 ? policy.ttl_steps : static_cast<uint64_t>(policy.ttl_seconds);
  return shard.stamped() && uint64_t{shard.stamp(slot)} + ttl < now;
}

uint32_t ShardExecutor::StampIn(const TableShard& shard, const float* record) {
  uint32_t stamp = 0;
  if (shard.stamped()) std::memcpy(&stamp, record + shard.stride(), sizeof(stamp));
  return stamp;
}

void ShardExecutor::ExpireSome() {
  tasks_since_expiry_ = 0;
  // One shard per call, in turn: expiry runs in small steps between
  // requests, never as a sweep that stops the server.
  TableShard* shard = nullptr;
  for (size_t tries = 0; tries < all_shards_.size() && shard == nullptr; ++tries) {
    TableShard* s = all_shards_[expiry_cursor_++ % all_shards_.size()];
    if (s->stamped() && !Blocked(*s)) shard = s;
  }
  if (shard == nullptr) return;
  const TablePolicy& policy = *policy_of_[shard->table_id()];
  const uint64_t ttl = policy.ttl_steps != 0 ? policy.ttl_steps : static_cast<uint64_t>(policy.ttl_seconds);
  const uint64_t now = NowStamp(policy, nullptr);
  if (now <= ttl) return;
  const uint32_t oldest = static_cast<uint32_t>(now - ttl);
  TableTierStats& stats = tier_[shard->table_id()];
  rocksdb::ColumnFamilyHandle* column = store_ != nullptr ? store_->column(shard->table_id()) : nullptr;
  const size_t hot = shard->ExpireHot(kExpirySlots, oldest, column, &batch_);
  size_t cold = 0;
  if (shard->cold_rows() > 0 && column != nullptr) {
    const uint32_t stride = shard->stride();
    // Expiring tables are not logged (ColdLogs): RocksDB holds all their
    // cold rows once the write in flight has landed, and no drain is due.
    SettleWrites();
    auto st = store_->ForEachRow(column, shard->shard(), [&](uint64_t key, std::span<const float> row) {
      uint32_t stamp = 0;
      if (row.size() != stride + 1 || shard->FindSlot(key) != TableShard::kNoSlot) return;
      std::memcpy(&stamp, row.data() + stride, sizeof(stamp));
      if (stamp >= oldest) return;
      batch_.Delete(column, shard->shard(), key);
      ++cold;
    });
    if (!st.ok()) return Fail(st);
    shard->ForgetCold(cold);
  }
  if (batch_.count() > 0) {
    SettleWrites();
    if (auto st = store_->Write(&batch_); !st.ok()) return Fail(st);
  }
  Bump(stats.hot_rows, -static_cast<int64_t>(hot));
  Bump(stats.cold_rows, -static_cast<int64_t>(cold));
  Bump(stats.expired, hot + cold);
  CountRows(*shard, -static_cast<int64_t>(hot + cold));
}

void ShardExecutor::Fail(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(failure_mu_);
  if (!failure_.ok()) return;
  failure_ = status;
  failed_.store(true, std::memory_order_release);
  spdlog::error("executor {}: the cold tier failed: {}", index_, status.message());
}

absl::Status ShardExecutor::failure() const {
  std::lock_guard<std::mutex> lock(failure_mu_);
  return failure_;
}

ShardExecutor::Outcome ShardExecutor::ResolveMisses(const Request& r, const ShardTask& task, bool is_push,
                                                   const ColdRead* read) {
  const TableEntry& table = *r.table;
  const uint32_t id = table.spec.id();
  TableTierStats& stats = tier_[id];
  // The misses that may be in the store: looked up below (in line), found
  // in `read`, or to be read before anything is changed.
  CollectColdMisses(r, task);
  const float* rows = nullptr;
  const uint8_t* found = nullptr;
  if (!lookup_.empty()) {
    const uint32_t record = shard_scratch_[lookup_[0]]->record_floats();
    // A read made for this task covers its misses if it holds every key
    // looked up now. It may hold more: one made ahead (ReadAhead()) also
    // has keys that tasks ahead brought back since. A miss it lacks is a
    // row that went cold since: then it reads again. Both lists are in the
    // task's order.
    bool covered = read != nullptr && read->table == id;
    read_at_.clear();
    for (size_t j = 0, at = 0; covered && j < lookup_keys_.size(); ++j, ++at) {
      while (at < read->keys.size() && (read->keys[at] != lookup_keys_[j] || read->shards[at] != lookup_shards_[j])) {
        ++at;
      }
      covered = at < read->keys.size();
      read_at_.push_back(static_cast<uint32_t>(at));
    }
    if (covered) {
      rows = read->rows.data();
      found = read->found.data();
    } else if (async_reads_) {
      pending_read_ = ReadOfLookups(id, record);
      return Outcome::kNeedsRead;
    } else {
      if (!ReadCold(id, record)) return Outcome::kFailed;
      rows = lookup_rows_.data();
      found = lookup_found_.data();
      read_at_.resize(lookup_keys_.size());
      std::iota(read_at_.begin(), read_at_.end(), 0u);
    }
    for (size_t j = 0; j < lookup_.size(); ++j) {
      if (!found[read_at_[j]]) continue;
      const uint32_t i = lookup_[j];
      const float* row = rows + size_t{read_at_[j]} * record;
      slots_[i] = shard_scratch_[i]->Insert(lookup_keys_[j], row, /*from_store=*/true, StampIn(*shard_scratch_[i], row));
      Bump(stats.promoted, 1);
      Bump(stats.hot_rows, 1);
      Bump(stats.cold_rows, -1);
    }
  }
  const bool every_key = table.policy.admits_every_key();
  uint64_t created = 0;
  for (uint32_t i : misses_) {
    if (slots_[i] != TableShard::kNoSlot) continue;
    TableShard& s = *shard_scratch_[i];
    const uint32_t position = task.positions[i];
    const uint64_t key = r.keys[position];
    if (!is_push && read_only_) continue;  // read as a new row would start (Execute)
    if (!every_key) {
      if (!is_push) continue;  // a pull of a key without a row reads zeros
      if (!Admit(s, table.policy, key, r.counts.empty() ? 1 : r.counts[position])) {
        Bump(stats.deferred, r.counts.empty() ? 1 : r.counts[position]);
        continue;
      }
      Bump(stats.admitted, 1);
    }
    slots_[i] = s.Insert(key, nullptr, /*from_store=*/false, NowStamp(table.policy, &r));
    created_[i] = 1;
    CountRows(s, 1);
    ++created;
  }
  Bump(stats.hot_rows, static_cast<int64_t>(created));
  return Outcome::kDone;
}

void ShardExecutor::EvictToBudget() {
  // A little under the budget, so that eviction runs in batches rather than
  // a row at a time after every request.
  const int64_t target = static_cast<int64_t>(static_cast<double>(budget_) * 0.97);
  CountSideBytes();
  int64_t hot = HotBytes();
  for (int round = 0; round < 8 && hot > target; ++round) {
    // Each shard gives up rows in proportion to its part of the hot bytes,
    // so every shard stays about as warm as the others.
    const double excess = static_cast<double>(hot - target);
    size_t evicted_now = 0;
    TableShard* largest = nullptr;
    for (TableShard* s : all_shards_) {
      if (Blocked(*s)) continue;  // a parked request counts on its rows staying where they are
      if (largest == nullptr || s->hot_bytes() > largest->hot_bytes()) largest = s;
      const size_t share = static_cast<size_t>(excess * static_cast<double>(s->hot_bytes()) /
                                               static_cast<double>(hot) / static_cast<double>(s->row_cost()));
      if (share > 0) evicted_now += EvictFrom(*s, share);
      // Written as they add up: a round frees 3% of the budget, and a
      // WriteBatch keeps its largest size (measured: two executors' batches
      // held ~100 MB past a 1.6 GB limit).
      if (batch_.count() >= kBatchRows && !WriteEvicted()) return;
    }
    // Shares all rounded down to nothing: the largest shard pays.
    if (evicted_now == 0 && largest != nullptr) {
      evicted_now = EvictFrom(*largest, static_cast<size_t>(excess) / largest->row_cost() + 1);
    }
    if (!WriteEvicted()) return;
    if (evicted_now == 0) break;  // every row is in use (tiny budget): nothing more to do now
    CountSideBytes();
    hot = HotBytes();
  }
  // The hot rows' room shrinks as the cold tier's indexes grow: the memory
  // of rows that left for good goes back. (A parked request holds slots.)
  for (TableShard* s : all_shards_) {
    if (!Blocked(*s)) s->Shrink();
  }
}

bool ShardExecutor::WriteEvicted() {
  if (batch_.count() == 0) return true;
  // The rows just evicted are gone from DRAM: a failed write leaves them
  // nowhere, and the job must fail rather than go on with them missing.
  auto write = [this](rocksdb::WriteBatch* batch) {
    absl::Status st = WriteToTier(batch);
    if (!st.ok()) Fail(absl::DataLossError(absl::StrCat("writing evicted rows: ", st.message())));
    return st.ok();
  };
  if (!tier_thread_) return write(batch_.batch());
  // One write in flight at a time: the executor fills the next batch while
  // the tier thread writes this one, and the rows waiting to be written
  // stay within two batches (see kBatchRows).
  SettleWrites();
  if (failed_.load(std::memory_order_acquire)) return false;
  std::swap(evicted_in_flight_, *batch_.batch());
  batch_.batch()->Clear();
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    write_in_flight_ = true;
  }
  const bool submitted = tier_thread_->Submit([this, write] {
    write(&evicted_in_flight_);
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      write_in_flight_ = false;
    }
    write_landed_.notify_all();
  });
  if (submitted) return true;
  // Stopping: written here, and nothing else is in flight.
  std::lock_guard<std::mutex> lock(write_mu_);
  write_in_flight_ = false;
  return write(&evicted_in_flight_);
}

absl::Status ShardExecutor::WriteToTier(rocksdb::WriteBatch* batch) {
  return logs_ ? logs_->Write(batch) : store_->Write(batch);
}

absl::Status ShardExecutor::ReadFromTier(uint32_t table, std::span<const uint32_t> shards,
                                         std::span<const uint64_t> keys, uint32_t floats, float* rows,
                                         std::vector<uint8_t>* found) {
  if (!logs_) return store_->MultiGet(store_->column(table), shards, keys, floats, rows, found);
  return logs_->MultiGet(table, shards, keys, floats, rows, found);
}

absl::Status ShardExecutor::RunOnTierThread(const std::function<absl::Status()>& job) {
  absl::Status st;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  const bool submitted = tier_thread_ && tier_thread_->Submit([&] {
    absl::Status result = job();
    std::lock_guard<std::mutex> lock(mu);
    st = std::move(result);
    done = true;
    cv.notify_all();
  });
  if (submitted) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  } else {
    st = job();  // no tier thread, or it is stopping: nothing else uses the logs
  }
  if (!st.ok()) Fail(st);
  return st;
}

RowStore* ShardExecutor::SettledStore() {
  SettleWrites();
  if (logs_ && !logs_->empty()) (void)RunOnTierThread([this] { return logs_->Drain(); });
  return store_;
}

void ShardExecutor::SettleWrites() {
  if (!tier_thread_) return;
  std::unique_lock<std::mutex> lock(write_mu_);
  write_landed_.wait(lock, [this] { return !write_in_flight_; });
}

size_t ShardExecutor::EvictFrom(TableShard& shard, size_t rows) {
  TableTierStats& stats = tier_[shard.table_id()];
  const size_t cold_before = shard.cold_rows();
  rocksdb::ColumnFamilyHandle* column = store_ != nullptr ? store_->column(shard.table_id()) : nullptr;
  const size_t evicted = shard.Evict(rows, column, &batch_);
  const size_t went_cold = shard.cold_rows() - cold_before;
  Bump(stats.hot_rows, -static_cast<int64_t>(evicted));
  Bump(stats.cold_rows, static_cast<int64_t>(went_cold));
  Bump(stats.demoted, evicted);
  // Rows that were never changed are dropped, not stored: they leave the
  // shard's count of rows held (their key recreates them identically).
  CountRows(shard, -static_cast<int64_t>(evicted - went_cold));
  return evicted;
}

ShardExecutor::Outcome ShardExecutor::Execute(ShardTask& task, const ColdRead* read) {
  Request& r = *task.request;
  const TableEntry& table = *r.table;
  const uint32_t dim = table.spec.dim();
  const bool is_push = r.message.header.type() != pb::PULL;  // PUSH or REPLICATE
  if (sum_steps_) {
    const uint64_t clock = r.message.header.clock();
    if (clock != 0 && clock < pending_clock_ && r.message.header.type() != pb::REPLICATE &&
        steps_out_of_order_++ == 0) {
      // Forwards may interleave across primaries (ack primary); a worker's
      // own request may not.
      spdlog::warn("executor {}: bsp: a worker's request of step {} came while step {} was being summed; its "
                   "gradients join the later step's sums",
                   index_, clock, pending_clock_);
    }
    if (pending_clock_ != 0 && (clock == 0 || clock > pending_clock_)) ApplyPendingSteps();
    if (is_push && clock != 0) {
      AddPending(task);
      return Outcome::kDone;
    }
  }
  if (failed_.load(std::memory_order_relaxed)) return Outcome::kFailed;
  const size_t n = task.positions.size();
  // Random keys miss the cache at every step: first the hash-map slot, then
  // the row. So the work is done in two passes, each prefetching a few keys
  // ahead: find every hot row, then apply or copy every row.
  // In "checkpoint" durability changed rows are remembered for the next
  // checkpoint; in "wal" they are written right below instead.
  const bool track_changes = is_push && store_ != nullptr && !wal_;
  FindRows(r, task);
  if (!misses_.empty()) {
    created_.assign(n, 0);
    const Outcome resolved = ResolveMisses(r, task, is_push, read);
    if (resolved != Outcome::kDone) return resolved;
  }
  // A row's first bytes are prefetched a few keys ahead; the hardware
  // prefetcher follows a long row once it is read in order. Prefetching
  // every line of a dense block (16K floats and their state: 2,048 lines)
  // was 7% of an executor's time in a dense push, for nothing.
  const size_t prefetch_bytes = std::min<size_t>(size_t{shard_scratch_[0]->stride()} * sizeof(float), kPrefetchBytes);
  const bool tiered = budget_ != 0;
  // What marks a row as used for the eviction policy: a pull, not the push
  // that follows it (a worker pushes what it pulled a step earlier, so the
  // push says nothing new), and not the request that created the row: a
  // key seen once (most of a long tail) is the first to go, and keys that
  // come back keep their rows hot. A backup sees only forwarded pushes.
  const bool touches = tiered && (!is_push || r.message.header.type() == pb::REPLICATE);
  const bool any_created = !misses_.empty();
  const bool expires = table.policy.expires();
  const uint32_t now = expires ? NowStamp(table.policy, &r) : 0;
  for (size_t i = 0; i < n; ++i) {
    if (i + kLookAhead < n && slots_[i + kLookAhead] != TableShard::kNoSlot) {
      const char* ahead = reinterpret_cast<const char*>(shard_scratch_[i + kLookAhead]->row(slots_[i + kLookAhead]));
      for (size_t line = 0; line < prefetch_bytes; line += 64) __builtin_prefetch(ahead + line, 1);
    }
    const size_t at = size_t{task.positions[i]} * dim;
    const uint32_t slot = slots_[i];
    if (slot == TableShard::kNoSlot) {
      // A key the table has not admitted: a push only counted it; a pull
      // reads the table's default, zeros. (Read-only: a key without a row
      // reads its initial weights, as the row it would get.)
      if (is_push) continue;
      if (read_only_ && table.policy.admits_every_key()) {
        expired_scratch_.resize(dim);
        InitializeWeights(table.spec.initializer(), r.keys[task.positions[i]], expired_scratch_.data(), dim);
        if (r.dtype == pb::FP16) {
          FloatsToHalves(expired_scratch_.data(), r.half_values.data() + at, dim);
        } else {
          std::memcpy(r.values.data() + at, expired_scratch_.data(), dim * sizeof(float));
        }
        continue;
      }
      if (r.dtype == pb::FP16) {
        std::fill_n(r.half_values.data() + at, dim, uint16_t{0});
      } else {
        std::fill_n(r.values.data() + at, dim, 0.0f);
      }
      continue;
    }
    TableShard& s = *shard_scratch_[i];
    float* row = s.row(slot);
    if (touches && !(any_created && created_[i])) s.Touch(slot);
    if (expires && IsStale(s, table.policy, slot, now)) {
      // Not updated within the TTL: the key starts over. A pull reads its
      // initial row; the next push (here and on every replica, which
      // decide by the push's own stamp) resets the row first.
      if (is_push) {
        s.Reinitialize(slot);
        Bump(tier_[table.spec.id()].expired, 1);
      } else {
        expired_scratch_.resize(s.stride());
        InitializeWeights(table.spec.initializer(), r.keys[task.positions[i]], expired_scratch_.data(), dim);
        row = expired_scratch_.data();
      }
    }
    if (is_push) {
      if (track_changes) s.MarkChanged(slot);
      s.SetStamp(slot, now);
      table.optimizer->Apply(row, GradOf(r, task.positions[i], dim), dim);
    } else if (r.dtype == pb::FP16) {
      FloatsToHalves(row, r.half_values.data() + at, dim);
    } else {
      std::memcpy(r.values.data() + at, row, dim * sizeof(float));
    }
  }
  if (!is_push && !r.overlays.empty()) ReadOverlays(r, task);
  if (is_push && store_ != nullptr && wal_) {
    rocksdb::ColumnFamilyHandle* column = store_->column(table.spec.id());
    // In (shard, key) order, as RocksDB stores them: its memtable inserts a
    // sorted batch several times faster than one in request order.
    order_scratch_.clear();
    for (uint32_t i = 0; i < n; ++i) {
      if (slots_[i] != TableShard::kNoSlot) order_scratch_.push_back(i);
    }
    auto sort_key = [&](uint32_t i) { return std::pair(task.local_shards[i], r.keys[task.positions[i]]); };
    std::sort(order_scratch_.begin(), order_scratch_.end(),
              [&](uint32_t a, uint32_t b) { return sort_key(a) < sort_key(b); });
    for (uint32_t i : order_scratch_) {
      TableShard& shard = *shard_scratch_[i];
      batch_.Put(column, shard.shard(), r.keys[task.positions[i]], shard.row(slots_[i]), shard.stride(),
                 shard.stamp_ptr(slots_[i]));
    }
    if (!WriteWal().ok()) {
      r.not_durable.store(true);
    } else {
      for (uint32_t i : order_scratch_) shard_scratch_[i]->MarkStored(slots_[i]);
    }
  }
  return Outcome::kDone;
}

void ShardExecutor::DefaultWeights(const TableEntry& table, uint64_t key, float* out) {
  const uint32_t dim = table.spec.dim();
  if (table.policy.admits_every_key()) {
    InitializeWeights(table.spec.initializer(), key, out, dim);
  } else {
    std::fill_n(out, dim, 0.0f);
  }
}

void ShardExecutor::ReadOverlays(Request& r, const ShardTask& task) {
  const TableEntry& table = *r.table;
  const uint32_t dim = table.spec.dim();
  const uint32_t id = table.spec.id();
  for (size_t i = 0; i < task.positions.size(); ++i) {
    const uint32_t position = task.positions[i];
    const uint64_t key = r.keys[position];
    const uint32_t shard = task.local_shards[i] * static_cast<uint32_t>(count_) + static_cast<uint32_t>(index_);
    const float* weights = nullptr;
    VersionOverlay::Found found = VersionOverlay::Found::kNo;
    for (const auto& overlay : r.overlays) {
      found = overlay->Find(id, shard, key, &weights);
      if (found != VersionOverlay::Found::kNo) break;
    }
    if (found == VersionOverlay::Found::kNo) continue;
    if (found == VersionOverlay::Found::kDeleted) {
      expired_scratch_.resize(dim);
      DefaultWeights(table, key, expired_scratch_.data());
      weights = expired_scratch_.data();
    }
    const size_t at = size_t{position} * dim;
    if (r.dtype == pb::FP16) {
      FloatsToHalves(weights, r.half_values.data() + at, dim);
    } else {
      std::memcpy(r.values.data() + at, weights, dim * sizeof(float));
    }
  }
}

void ShardExecutor::FoldOverlay(const VersionOverlay& overlay, const std::vector<const TableEntry*>& tables) {
  for (uint32_t shard : overlay.replaced_shards()) {
    if (shard % static_cast<uint32_t>(count_) == static_cast<uint32_t>(index_)) (void)DropShard(shard);
  }
  std::vector<float> row;
  for (const TableEntry* table : tables) {
    const uint32_t dim = table->spec.dim();
    overlay.ForEachRow(table->spec.id(), [&](uint32_t shard, uint64_t key, std::span<const float> weights) {
      if (shard % static_cast<uint32_t>(count_) != static_cast<uint32_t>(index_)) return;
      const TableShard& s = Shard(shard / static_cast<uint32_t>(count_), *table);
      row.assign(s.stride(), 0.0f);
      if (weights.empty()) {
        DefaultWeights(*table, key, row.data());
      } else {
        std::memcpy(row.data(), weights.data(), dim * sizeof(float));
      }
      LoadRow(*table, shard, key, row);
    });
  }
}

}  // namespace sparta
