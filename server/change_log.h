// ChangeLog: which rows one shard executor wrote to or deleted from the
// server's RowStore, kept for the published model versions
// (serving.publish_every; server/delta_part.h).
//
// Every row a job changes reaches the store by a cut (PersistChanged), an
// eviction or a write-ahead log write, and every row it expires leaves it
// by a delete, so after a cut's PersistChanged the store's rows under the
// logged keys are exactly what changed since the previous cut. A cut that
// is never published (it failed on another server) must not lose its
// changes: each cut keeps what it logged until a later cut says it goes on
// from a version at or after it (`base`), and a cut returns everything
// logged after its base.
//
// Rows are logged by their column family's RocksDB id (a cheap call on the
// write path); the cut maps them to tables. A shard whose rows were all
// replaced (dropped, or streamed in whole from a primary) is logged as
// such: deletions of its rows in between are not known row by row.
//
// Not thread-safe: owned by one executor and used on its thread.
#ifndef SPARTA_SERVER_CHANGE_LOG_H_
#define SPARTA_SERVER_CHANGE_LOG_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace sparta {

class ChangeLog {
 public:
  struct Row {
    uint32_t column;  // rocksdb::ColumnFamilyHandle::GetID()
    uint32_t shard;
    uint64_t key;
    friend bool operator==(const Row&, const Row&) = default;
    friend auto operator<=>(const Row&, const Row&) = default;
  };
  struct Changes {
    std::vector<Row> rows;          // sorted by (column, shard, key), unique
    std::vector<uint32_t> replaced;  // sorted, unique
  };

  void Add(uint32_t column, uint32_t shard, uint64_t key) {
    rows_.push_back({column, shard, key});
    if (rows_.size() >= compact_at_) Compact();
  }
  void AddReplaced(uint32_t shard) { replaced_.push_back(shard); }

  // Cut `version`, going on from version `base`: returns what was logged
  // since `base` (by cuts after it, and since the last cut), keeps what was
  // logged since the last cut as cut `version`'s, and forgets the cuts up
  // to `base`.
  Changes Cut(uint64_t version, uint64_t base);

  // Bytes held (16 per row logged and not yet forgotten).
  size_t bytes() const;

 private:
  // Sorts and de-duplicates the rows since the last cut; a row changed at
  // every step of an interval is logged many times.
  void Compact();
  static void Merge(const Changes& from, Changes* into);

  static constexpr size_t kMinCompact = size_t{1} << 16;
  std::vector<Row> rows_;
  std::vector<uint32_t> replaced_;
  size_t compact_at_ = kMinCompact;
  std::map<uint64_t, Changes> cuts_;  // by version: what each unconfirmed cut logged
};

}  // namespace sparta

#endif  // SPARTA_SERVER_CHANGE_LOG_H_
