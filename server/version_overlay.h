// VersionOverlay: one published model version (a delta: common/
// delta_files.h) as a serving cluster's server stages it while following
// its job: the weights of the rows that changed since the version before,
// of the shards this server holds. The rows the server serves stay as they
// are until every front-end has moved past the version before; then the
// overlay is folded into them (ShardExecutor::FoldOverlay). Until then a
// pull at this version (or a later one) reads a key here first
// (ShardExecutor), so one request never mixes two versions.
//
// A key may be marked deleted (the row expired in training since the
// version before), and a shard may be replaced (its part of the delta
// holds every row it has, as after a move): a key of such a shard that is
// not here has no row at this version.
//
// A checkpoint read as a version (ReadCheckpoint) replaces every shard the
// server holds: it is how a serving cluster whose chain of deltas is
// broken (pruned) or never published catches up. It holds the weights of
// every row of those shards, not one interval's changes.
//
// Immutable once read, hence thread-safe: the I/O thread and the
// executors share it through shared_ptr.
#ifndef SPARTA_SERVER_VERSION_OVERLAY_H_
#define SPARTA_SERVER_VERSION_OVERLAY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "sparta.pb.h"

namespace sparta {

class VersionOverlay {
 public:
  // Reads the delta in `delta_dir` (its manifest and every server's part),
  // keeping the rows of the shards `holds` names. A row whose width is not
  // its table's is an error, as is a table of another width than
  // `dim_of(table id)` (0: this server does not have the table).
  static absl::StatusOr<std::shared_ptr<const VersionOverlay>> Read(
      const std::string& delta_dir, const std::function<bool(uint32_t shard)>& holds,
      const std::function<uint32_t(uint32_t table)>& dim_of);

  // Reads the checkpoint in `checkpoint_dir` (its manifest and the parts of
  // the servers that saved the shards `holds` names) as a version that
  // replaces every shard held, going on from `base` (what the server has
  // staged). Rows keep their weights only. The checkpoint must have
  // `num_shards` shards; tables are checked as by Read().
  static absl::StatusOr<std::shared_ptr<const VersionOverlay>> ReadCheckpoint(
      const std::string& checkpoint_dir, uint64_t base, uint32_t num_shards,
      const std::function<bool(uint32_t shard)>& holds, const std::function<uint32_t(uint32_t table)>& dim_of);

  uint64_t version() const { return version_; }
  uint64_t base() const { return base_; }
  uint64_t rows() const { return rows_; }

  enum class Found {
    kNo,       // not changed in this version: read on
    kRow,      // changed: `*weights` are its dim floats
    kDeleted,  // no row at this version: the key reads as one never seen
  };
  Found Find(uint32_t table, uint32_t shard, uint64_t key, const float** weights) const;

  // Shards this version replaces whole (see above), of those this server holds.
  const std::vector<uint32_t>& replaced_shards() const { return replaced_list_; }

  // Calls `visit` for every key of `table` this version changes (weights
  // empty: deleted), in no particular order.
  void ForEachRow(uint32_t table,
                  const std::function<void(uint32_t shard, uint64_t key, std::span<const float> weights)>& visit) const;
  // Tables with a changed row here.
  std::vector<uint32_t> tables() const;

 private:
  static constexpr uint32_t kDeleted = ~uint32_t{0};
  // The width check both readers make: FailedPrecondition naming `where`.
  static absl::Status CheckDim(const std::string& where, const pb::TableSpec& spec,
                               const std::function<uint32_t(uint32_t table)>& dim_of);
  // Adds one row (weights empty: deleted) of `table` (dim floats a row).
  void Add(uint32_t table, uint32_t dim, uint32_t shard, uint64_t key, std::span<const float> weights);

  struct Entry {
    uint32_t shard;
    uint32_t row;  // into `weights` (rows of dim floats), or kDeleted
  };
  struct Table {
    uint32_t dim = 0;
    absl::flat_hash_map<uint64_t, Entry> index;
    std::vector<float> weights;
  };

  uint64_t version_ = 0;
  uint64_t base_ = 0;
  uint64_t rows_ = 0;
  absl::flat_hash_map<uint32_t, Table> tables_;
  absl::flat_hash_set<uint32_t> replaced_;
  std::vector<uint32_t> replaced_list_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_VERSION_OVERLAY_H_
