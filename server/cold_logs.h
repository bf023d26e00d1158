// ColdLogs: where one shard executor's evicted rows go under a memory limit:
// a ColdLog (server/cold_log.h) per table, in front of the server's RocksDB.
// An evicted row is one append to its table's log, where RocksDB cost an
// insert into a memtable, a flush and its merges (sparta-cold-store-bench:
// 4.3x-5.1x the CPU per row), and a cold row is read from the log before
// RocksDB is asked for the keys the log lacks.
//
// RocksDB stays what everything else reads: checkpoints, new replicas'
// streams, dropped shards, expiry and serving. Before any of them reads it
// the executor has the logs drained (Drain(): every log's rows written to
// RocksDB, and the logs emptied). A log whose index would outgrow its share
// of the memory budget, or whose file is mostly garbage (copies of a row
// that a newer copy replaced), has its oldest records moved to RocksDB a
// batch at a time as rows are evicted, so it stays a window of the rows
// evicted last and no job on the tier thread holds up its reads for long. Rows of tables with
// embedding.eviction.ttl are not logged: expiry sweeps them in RocksDB a
// shard at a time, and draining before each step of it would cost more
// than the log saves.
//
// A log's keys are the table's keys; each record keeps the row's virtual
// shard too, which RocksDB's keys begin with.
//
// Not thread-safe, but for Track() and the figures: the executor's tier
// thread does everything else (ColdTierThread runs one job at a time).
#ifndef SPARTA_SERVER_COLD_LOGS_H_
#define SPARTA_SERVER_COLD_LOGS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <rocksdb/write_batch.h>

#include "absl/status/status.h"
#include "server/cold_log.h"
#include "server/row_store.h"
#include "server/table_ids.h"

namespace sparta {

class ColdLogs {
 public:
  // Logs go in `dir` (created on first use), named after `executor`;
  // `store` outlives this. Their index may hold `max_index_bytes`: past
  // that, each write moves their oldest rows to RocksDB (a bounded number
  // per write), so the logs become a window of the rows evicted last.
  ColdLogs(RowStore* store, std::string dir, int executor, uint64_t max_index_bytes);
  ~ColdLogs();
  ColdLogs(const ColdLogs&) = delete;
  ColdLogs& operator=(const ColdLogs&) = delete;

  // Rows of table `id` go to a log from now on (any thread; before the
  // first write that holds them).
  void Track(uint32_t id) { logged_[id].store(true, std::memory_order_release); }

  // Writes an eviction's batch: puts of logged tables' rows to their logs
  // (a delete also deletes in RocksDB, which may hold an older copy), the
  // rest to RocksDB; then keeps the logs within their index's bytes and
  // their garbage within bounds (KeepToWindow()). The batch is left empty.
  absl::Status Write(rocksdb::WriteBatch* batch);
  // RowStore::MultiGet, the logs first: rows the log of `table` holds are
  // newer than any copy in RocksDB.
  absl::Status MultiGet(uint32_t table, std::span<const uint32_t> shards, std::span<const uint64_t> keys,
                        uint32_t floats, float* rows, std::vector<uint8_t>* found);
  // Writes every log's rows to RocksDB and empties the logs.
  absl::Status Drain();

  // Any thread.
  bool empty() const { return records_.load(std::memory_order_acquire) == 0; }
  uint64_t index_bytes() const { return index_bytes_.load(std::memory_order_relaxed); }
  uint64_t file_bytes() const { return file_bytes_.load(std::memory_order_relaxed); }
  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }
  // Rows moved to RocksDB so far, by drains and by keeping to the window.
  uint64_t moved_rows() const { return moved_rows_.load(std::memory_order_relaxed); }

 private:
  class Splitter;
  // Rows moved from a log to RocksDB at a time (one write batch).
  static constexpr size_t kMoveRecords = 16384;
  // Moves the oldest `max_records` records of table `id`'s `log` to RocksDB.
  absl::Status MoveOut(ColdLog& log, uint32_t id, size_t max_records);
  // Moves the oldest rows out while the index is over its bytes or a log
  // is more garbage than rows; a bounded number a call.
  absl::Status KeepToWindow();
  // Table `id`'s log, made for rows of `row_bytes` on first use.
  absl::StatusOr<ColdLog*> LogOf(uint32_t id, size_t row_bytes);
  // The table whose column family has id `column_id`, or kMaxTables.
  uint32_t TableOfColumn(uint32_t column_id);
  void UpdateFigures();

  RowStore* const store_;
  const std::string dir_;
  const int executor_;
  const uint64_t max_index_bytes_;
  std::unique_ptr<std::atomic<bool>[]> logged_;
  std::vector<std::unique_ptr<ColdLog>> logs_;  // by table id
  std::vector<uint32_t> used_;                  // ids with a log
  std::vector<uint32_t> table_of_column_;       // by column family id; kMaxTables: not looked up yet
  std::vector<char> row_;                       // one record's row
  std::atomic<uint64_t> records_{0}, index_bytes_{0}, file_bytes_{0}, rows_{0}, moved_rows_{0};
};

}  // namespace sparta

#endif  // SPARTA_SERVER_COLD_LOGS_H_
