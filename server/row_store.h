// RowStore: a server's RocksDB, where its rows persist.
//
// One database per server, one column family per table ("table-<id>").
// A row's RocksDB key is its virtual shard (4 bytes) then its feature key
// (8 bytes), both big-endian, so the rows of one shard are one contiguous
// key range: a checkpoint can be read back shard by shard, by a server that
// owns a different set of shards than the one that wrote it. The value is
// the row as it lives in memory: the weights, then the optimizer state.
//
// Rows are written by the shard executors in batches (RowBatch) behind the
// hot path; with durability "wal" every batch goes through the write-ahead
// log before the push it belongs to is acknowledged, with "checkpoint" the
// log is skipped and rows are only made durable by Checkpoint().
//
// Thread-safe: rocksdb::DB is; column families are created by one thread
// (the server's I/O thread) before any batch for that table is written, and
// their handles live in a fixed array, so executors read them without locks.
#ifndef SPARTA_SERVER_ROW_STORE_H_
#define SPARTA_SERVER_ROW_STORE_H_

#include <array>
#include <atomic>
#include <mutex>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/change_log.h"
#include "server/table_ids.h"

namespace sparta {

// The RocksDB key of one row, and back (false: not 12 bytes).
std::string RowKey(uint32_t shard, uint64_t key);
bool ParseRowKey(std::string_view bytes, uint32_t* shard, uint64_t* key);

// Rows to be written together. Not thread-safe: one per executor.
class RowBatch {
 public:
  // The row's value is its `floats` floats, then, for a table with
  // embedding.eviction.ttl, `stamp` (when it was last updated: a step or
  // unix seconds) as one more 4-byte word.
  void Put(rocksdb::ColumnFamilyHandle* column, uint32_t shard, uint64_t key, const float* row, uint32_t floats,
           const uint32_t* stamp = nullptr);
  void Delete(rocksdb::ColumnFamilyHandle* column, uint32_t shard, uint64_t key);
  // Every row of `shard` in `column` (one key range: see RowKey).
  void DeleteShard(rocksdb::ColumnFamilyHandle* column, uint32_t shard);
  size_t count() const { return static_cast<size_t>(batch_.Count()); }
  rocksdb::WriteBatch* batch() { return &batch_; }
  // Every row put or deleted from now on is also logged in `log` (which
  // must outlive the batch): serving.publish_every's deltas.
  void LogTo(ChangeLog* log) { log_ = log; }

 private:
  rocksdb::WriteBatch batch_;
  ChangeLog* log_ = nullptr;
  char key_[12];
};

class RowStore {
 public:

  // Opens (creating if needed) the database in `dir`. With `wal`, Write()
  // logs every batch before returning; otherwise nothing is durable until
  // Checkpoint(). `fresh` deletes what an earlier run left there.
  // `cold_tier_bytes` > 0: the database is also the cold tier of a server
  // under a memory limit (rows are read back, not only written), and its
  // block cache and memtables together stay within that many bytes.
  static absl::StatusOr<std::unique_ptr<RowStore>> Open(const std::string& dir, bool wal, bool fresh,
                                                        uint64_t cold_tier_bytes = 0);
  ~RowStore();

  // Creates table `id`'s column family if it does not exist yet. I/O thread.
  absl::Status AddTable(uint32_t id);
  // nullptr if AddTable(id) has not run.
  rocksdb::ColumnFamilyHandle* column(uint32_t id) const { return id < kMaxTables ? columns_[id] : nullptr; }
  // The folder the database is in.
  const std::string& dir() const { return dir_; }

  // Writes (and, with `wal`, logs) the batch, which is left empty. With
  // `wal`, the first failure (a full disk) is final: every later Write()
  // returns it without touching RocksDB, whose log writer must not be used
  // again after an error, and the job is to fail with it (wal_error()).
  absl::Status Write(RowBatch* batch);
  // The same, for the writes a RowBatch took (RowBatch::batch()), moved
  // out of it to be written on another thread.
  absl::Status Write(rocksdb::WriteBatch* batch);
  // Reads rows (shards[i], keys[i]) of the table in `column` from the live
  // database, in one batched lookup: a found row's `floats` floats go to
  // rows[i * floats] and found[i] is set. Any thread.
  absl::Status MultiGet(rocksdb::ColumnFamilyHandle* column, std::span<const uint32_t> shards,
                        std::span<const uint64_t> keys, uint32_t floats, float* rows, std::vector<uint8_t>* found);

  // Calls visit for every row of `shard` in the live database's `column`,
  // in key order. Any thread.
  absl::Status ForEachRow(rocksdb::ColumnFamilyHandle* column, uint32_t shard, const std::function<void(uint64_t key, std::span<const float> row)>& visit);
  // The same, as of `snapshot` (null: the live database), until `visit`
  // returns false.
  absl::Status ForEachRow(rocksdb::ColumnFamilyHandle* column, uint32_t shard, const rocksdb::Snapshot* snapshot,
                          const std::function<bool(uint64_t key, std::span<const float> row)>& visit);

  // Makes scans of `column` (ForEachRow) cheap: a store that is no cold
  // tier keeps its newest rows in a vector memtable, which every iterator
  // copies and sorts (10 ms for 60k rows), so a large one is flushed first.
  // Any thread.
  absl::Status PrepareScan(rocksdb::ColumnFamilyHandle* column);

  // A consistent view of the database as it is now, released when the last
  // copy of the pointer goes (it keeps overwritten rows on disk until then).
  // Any thread.
  std::shared_ptr<const rocksdb::Snapshot> TakeSnapshot();

  // The write-ahead log's failure, or OK (any thread).
  absl::Status wal_error() const;
  bool wal_failed() const { return wal_failed_.load(std::memory_order_acquire); }

  // Sizes RocksDB reports, summed over the tables (any thread: RocksDB's
  // properties are thread-safe).
  struct Sizes {
    uint64_t sst_bytes = 0;       // live table files on disk
    uint64_t memtable_bytes = 0;  // not yet flushed
    uint64_t wal_bytes = 0;
  };
  Sizes GetSizes() const;

  // Whether RocksDB has flushes or merges running or waiting (any thread).
  bool BackgroundWorkPending() const;

  // DRAM RocksDB's open table files hold (their indexes and Bloom filters),
  // as of the last flush or compaction; 0 unless opened as a cold tier.
  // Any thread.
  uint64_t table_reader_bytes() const { return table_reader_bytes_->load(std::memory_order_relaxed); }

  // After a failed write or checkpoint (durability "checkpoint"), lets
  // RocksDB take writes again if it stopped. Before a checkpoint is cut,
  // while no executor writes.
  void ResumeAfterFailure();

  // Flushes the memtables and makes a RocksDB checkpoint in `dir` (which
  // must not exist): hard links to the table files, so successive
  // checkpoints share what did not change.
  absl::Status Checkpoint(const std::string& dir);

  // Reads the rows of `shards` of table `id` from a database written by a
  // RowStore (a live one or a checkpoint), without modifying it.
  using RowVisitor = std::function<void(uint32_t shard, uint64_t key, std::span<const float> row)>;
  static absl::Status ReadShards(const std::string& dir, uint32_t id, const std::vector<uint32_t>& shards,
                                 const RowVisitor& visit);

 private:
  RowStore() = default;

  // Rows a vector memtable may hold before a scan flushes it.
  static constexpr uint64_t kMaxUnsortedEntries = 32768;
  rocksdb::Options options_;  // of every column family
  bool cold_tier_ = false;    // opened as a cold tier: skip-list memtables
  std::unique_ptr<rocksdb::DB> db_;
  std::string dir_;
  bool wal_ = false;
  std::atomic<bool> wal_failed_{false};
  mutable std::mutex wal_error_mu_;
  absl::Status wal_error_;  // guarded by wal_error_mu_
  // A write or a checkpoint failed: RocksDB may have stopped writes (a
  // background error such as a full disk) until Resume().
  std::atomic<bool> needs_resume_{false};
  std::shared_ptr<std::atomic<uint64_t>> table_reader_bytes_;  // set by a listener
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // owned; destroyed before db_
  std::array<rocksdb::ColumnFamilyHandle*, kMaxTables> columns_{};
};

}  // namespace sparta

#endif  // SPARTA_SERVER_ROW_STORE_H_
