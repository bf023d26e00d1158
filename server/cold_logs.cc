#include "server/cold_logs.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace sparta {

// Routes an eviction batch's entries: puts of logged tables to their logs,
// everything else to a batch for RocksDB.
class ColdLogs::Splitter : public rocksdb::WriteBatch::Handler {
 public:
  explicit Splitter(ColdLogs* logs) : logs_(logs) {}

  rocksdb::Status PutCF(uint32_t column_id, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    const uint32_t table = logs_->TableOfColumn(column_id);
    if (table == kMaxTables) return Failed(absl::InternalError("an evicted row of a table without a column family"));
    if (!logs_->logged_[table].load(std::memory_order_acquire)) return rest.Put(logs_->store_->column(table), key, value);
    uint32_t shard = 0;
    uint64_t row_key = 0;
    if (!ParseRowKey(std::string_view(key.data(), key.size()), &shard, &row_key)) {
      return Failed(absl::InternalError("an evicted row with a malformed key"));
    }
    auto log = logs_->LogOf(table, sizeof(uint32_t) + value.size());
    if (!log.ok()) return Failed(log.status());
    // The record's row: the shard, then the row as RocksDB would hold it.
    std::vector<char>& row = logs_->row_;
    row.resize(sizeof(uint32_t) + value.size());
    std::memcpy(row.data(), &shard, sizeof(shard));
    std::memcpy(row.data() + sizeof(shard), value.data(), value.size());
    if (auto st = (*log)->Put(row_key, row.data()); !st.ok()) return Failed(st);
    return rocksdb::Status::OK();
  }

  rocksdb::Status DeleteCF(uint32_t column_id, const rocksdb::Slice& key) override {
    const uint32_t table = logs_->TableOfColumn(column_id);
    if (table == kMaxTables) return Failed(absl::InternalError("a deleted row of a table without a column family"));
    uint32_t shard = 0;
    uint64_t row_key = 0;
    if (table < logs_->logs_.size() && logs_->logs_[table] != nullptr &&
        ParseRowKey(std::string_view(key.data(), key.size()), &shard, &row_key)) {
      if (auto erased = logs_->logs_[table]->Erase(row_key); !erased.ok()) return Failed(erased.status());
    }
    return rest.Delete(logs_->store_->column(table), key);
  }

  rocksdb::WriteBatch rest;
  absl::Status status;

 private:
  rocksdb::Status Failed(absl::Status st) {
    status = std::move(st);
    return rocksdb::Status::Aborted(std::string(status.message()));
  }

  ColdLogs* const logs_;
};

ColdLogs::ColdLogs(RowStore* store, std::string dir, int executor, uint64_t max_index_bytes)
    : store_(store),
      dir_(std::move(dir)),
      executor_(executor),
      max_index_bytes_(max_index_bytes),
      logged_(new std::atomic<bool>[kMaxTables]()) {}

ColdLogs::~ColdLogs() = default;

uint32_t ColdLogs::TableOfColumn(uint32_t column_id) {
  // Column family ids are small and a table's never changes: each is looked
  // up once in the store (a scan of its tables), then remembered, so that
  // no evicted row pays for the scan.
  if (column_id < table_of_column_.size() && table_of_column_[column_id] != kMaxTables) {
    return table_of_column_[column_id];
  }
  for (uint32_t id = 0; id < kMaxTables; ++id) {
    if (rocksdb::ColumnFamilyHandle* column = store_->column(id); column != nullptr && column->GetID() == column_id) {
      if (table_of_column_.size() <= column_id) table_of_column_.resize(column_id + 1, kMaxTables);
      table_of_column_[column_id] = id;
      return id;
    }
  }
  return kMaxTables;
}

absl::StatusOr<ColdLog*> ColdLogs::LogOf(uint32_t id, size_t row_bytes) {
  if (logs_.size() <= id) logs_.resize(id + 1);
  if (logs_[id] == nullptr) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    const std::string path = absl::StrCat(dir_, "/executor-", executor_, "-table-", id, ".rows");
    auto log = ColdLog::Create(path, static_cast<uint32_t>(row_bytes));
    if (!log.ok()) return log.status();
    logs_[id] = *std::move(log);
    used_.push_back(id);
  }
  if (logs_[id]->row_bytes() != row_bytes) {
    return absl::InternalError(absl::StrCat("table ", id, ": an evicted row of ", row_bytes - sizeof(uint32_t),
                                            " bytes; its cold log holds rows of ",
                                            logs_[id]->row_bytes() - sizeof(uint32_t)));
  }
  return logs_[id].get();
}

absl::Status ColdLogs::Write(rocksdb::WriteBatch* batch) {
  Splitter splitter(this);
  const rocksdb::Status iterated = batch->Iterate(&splitter);
  batch->Clear();
  UpdateFigures();
  SPARTA_RETURN_IF_ERROR(splitter.status);
  if (!iterated.ok()) return absl::InternalError(absl::StrCat("splitting evicted rows: ", iterated.ToString()));
  if (splitter.rest.Count() > 0) SPARTA_RETURN_IF_ERROR(store_->Write(&splitter.rest));
  return KeepToWindow();
}

absl::Status ColdLogs::MultiGet(uint32_t table, std::span<const uint32_t> shards, std::span<const uint64_t> keys,
                                uint32_t floats, float* rows, std::vector<uint8_t>* found) {
  rocksdb::ColumnFamilyHandle* column = store_->column(table);
  ColdLog* log = table < logs_.size() ? logs_[table].get() : nullptr;
  if (log == nullptr || log->keys() == 0) return store_->MultiGet(column, shards, keys, floats, rows, found);
  found->assign(keys.size(), 0);
  const size_t row_bytes = floats * sizeof(float);
  if (log->row_bytes() != sizeof(uint32_t) + row_bytes) {
    return absl::InternalError(absl::StrCat("table ", table, ": reading rows of ", row_bytes,
                                            " bytes from a cold log of rows of ", log->row_bytes() - sizeof(uint32_t)));
  }
  std::vector<uint32_t> rest;  // positions the log lacks
  row_.resize(log->row_bytes());
  for (size_t i = 0; i < keys.size(); ++i) {
    auto in_log = log->Get(keys[i], row_.data());
    if (!in_log.ok()) return in_log.status();
    if (!*in_log) {
      rest.push_back(static_cast<uint32_t>(i));
      continue;
    }
    std::memcpy(rows + i * floats, row_.data() + sizeof(uint32_t), row_bytes);
    (*found)[i] = 1;
  }
  if (rest.empty()) return absl::OkStatus();
  std::vector<uint32_t> rest_shards(rest.size());
  std::vector<uint64_t> rest_keys(rest.size());
  for (size_t j = 0; j < rest.size(); ++j) {
    rest_shards[j] = shards[rest[j]];
    rest_keys[j] = keys[rest[j]];
  }
  std::vector<float> rest_rows(rest.size() * size_t{floats});
  std::vector<uint8_t> rest_found;
  SPARTA_RETURN_IF_ERROR(store_->MultiGet(column, rest_shards, rest_keys, floats, rest_rows.data(), &rest_found));
  for (size_t j = 0; j < rest.size(); ++j) {
    if (!rest_found[j]) continue;
    std::memcpy(rows + size_t{rest[j]} * floats, rest_rows.data() + j * floats, row_bytes);
    (*found)[rest[j]] = 1;
  }
  return absl::OkStatus();
}

absl::Status ColdLogs::MoveOut(ColdLog& log, uint32_t id, size_t max_records) {
  rocksdb::ColumnFamilyHandle* column = store_->column(id);
  const size_t row_bytes = log.row_bytes();
  const auto floats = static_cast<uint32_t>((row_bytes - sizeof(uint32_t)) / sizeof(float));
  // The batch in RocksDB's key order, (shard, key): its memtable inserts a
  // sorted run several times faster than the log's order.
  std::vector<std::pair<uint64_t, uint64_t>> order;  // (shard, key) of each row
  std::vector<char> rows;                            // the rows, as the log holds them
  auto visit = [&](uint64_t key, const char* row) -> absl::Status {
    uint32_t shard;
    std::memcpy(&shard, row, sizeof(shard));
    order.emplace_back(shard, key);
    rows.insert(rows.end(), row, row + row_bytes);
    return absl::OkStatus();
  };
  auto write = [&]() -> absl::Status {
    std::vector<uint32_t> index(order.size());
    for (uint32_t i = 0; i < index.size(); ++i) index[i] = i;
    std::sort(index.begin(), index.end(), [&](uint32_t a, uint32_t b) { return order[a] < order[b]; });
    RowBatch batch;  // not the executor's: moving a row is no change for serving's deltas
    for (uint32_t i : index) {
      const char* row = rows.data() + size_t{i} * row_bytes;
      batch.Put(column, static_cast<uint32_t>(order[i].first), order[i].second,
                reinterpret_cast<const float*>(row + sizeof(uint32_t)), floats);
    }
    return store_->Write(&batch);  // `order` stays: what was moved, counted above
  };
  auto passed = log.MoveOldest(max_records, visit, write);
  if (!passed.ok()) return passed.status();
  moved_rows_.fetch_add(order.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ColdLogs::Drain() {
  for (uint32_t id : used_) {
    ColdLog& log = *logs_[id];
    // Bounded batches, as the executor writes: a drain may move millions of rows.
    while (log.unmoved() > 0) SPARTA_RETURN_IF_ERROR(MoveOut(log, id, kMoveRecords));
  }
  UpdateFigures();
  return absl::OkStatus();
}

absl::Status ColdLogs::KeepToWindow() {
  // A bounded amount a call, so that the reads queued behind this job do
  // not wait long: twice what one eviction's write appends, enough to keep
  // up with them.
  for (int round = 0; round < 2; ++round) {
    ColdLog* largest = nullptr;
    uint32_t largest_id = 0;
    bool over = index_bytes() > max_index_bytes_;
    for (uint32_t id : used_) {
      ColdLog& log = *logs_[id];
      // Garbage past the live rows and 64 MiB: the oldest records, where
      // most of it is, go too.
      if (log.dead_records() > log.keys() && log.file_bytes() > (uint64_t{64} << 20)) over = true;
      if (largest == nullptr || log.index_bytes() > largest->index_bytes()) largest = &log, largest_id = id;
    }
    if (!over || largest == nullptr) break;
    SPARTA_RETURN_IF_ERROR(MoveOut(*largest, largest_id, kMoveRecords));
    UpdateFigures();
  }
  return absl::OkStatus();
}

void ColdLogs::UpdateFigures() {
  uint64_t records = 0, index = 0, file = 0, rows = 0;
  for (uint32_t id : used_) {
    records += logs_[id]->records();
    index += logs_[id]->index_bytes();
    file += logs_[id]->file_bytes();
    rows += logs_[id]->keys();
  }
  index_bytes_.store(index, std::memory_order_relaxed);
  file_bytes_.store(file, std::memory_order_relaxed);
  rows_.store(rows, std::memory_order_relaxed);
  records_.store(records, std::memory_order_release);
}

}  // namespace sparta
