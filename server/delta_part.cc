#include "server/delta_part.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/delta_files.h"
#include "common/status_macros.h"
#include "server/delta_file.h"

namespace sparta {
namespace {

// Writes table `table`'s changed rows `rows` (of one column, sorted by
// shard and key) and the shards in `replaced` (sorted) to `writer`.
absl::Status WriteTable(ShardExecutor& executor, const TableEntry& table, std::span<const ChangeLog::Row> rows,
                        std::span<const uint32_t> replaced, DeltaFileWriter* writer) {
  std::vector<uint64_t> keys;
  std::vector<float> weights;
  std::vector<uint8_t> found;
  const uint32_t dim = table.spec.dim();
  auto write_whole = [&](uint32_t shard) {
    return executor.ForEachWeights(table, shard, [&](uint64_t key, std::span<const float> w) {
      return writer->Put(shard, key, w);
    });
  };
  size_t r = 0, next_replaced = 0;
  while (r < rows.size()) {
    const uint32_t shard = rows[r].shard;
    size_t end = r;
    while (end < rows.size() && rows[end].shard == shard) ++end;
    // Whole shards before this one, in order.
    for (; next_replaced < replaced.size() && replaced[next_replaced] < shard; ++next_replaced) {
      SPARTA_RETURN_IF_ERROR(write_whole(replaced[next_replaced]));
    }
    if (next_replaced < replaced.size() && replaced[next_replaced] == shard) {
      SPARTA_RETURN_IF_ERROR(write_whole(shard));
      ++next_replaced;
    } else {
      keys.clear();
      for (size_t i = r; i < end; ++i) keys.push_back(rows[i].key);
      SPARTA_RETURN_IF_ERROR(executor.ReadWeights(table, shard, keys, &weights, &found));
      for (size_t i = 0; i < keys.size(); ++i) {
        if (found[i]) {
          SPARTA_RETURN_IF_ERROR(writer->Put(shard, keys[i], std::span<const float>(weights.data() + i * dim, dim)));
        } else {
          SPARTA_RETURN_IF_ERROR(writer->Delete(shard, keys[i]));
        }
      }
    }
    r = end;
  }
  for (; next_replaced < replaced.size(); ++next_replaced) {
    SPARTA_RETURN_IF_ERROR(write_whole(replaced[next_replaced]));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DeltaPart> WriteDeltaPart(ShardExecutor& executor, const RowStore& store, const TableRegistry& tables,
                                         uint64_t version, uint64_t base,
                                         const std::function<bool(uint32_t shard)>& leads,
                                         const std::string& delta_dir, int rank) {
  ChangeLog::Changes changes = executor.CutChanges(version, base);
  DeltaPart part;
  for (uint32_t shard : changes.replaced) {
    if (leads(shard)) part.replaced.push_back(shard);
  }
  // Only the rows of shards this server leads; sorted by (column, shard, key).
  std::erase_if(changes.rows, [&](const ChangeLog::Row& row) { return !leads(row.shard); });
  for (uint32_t id = 0; id < kMaxTables; ++id) {
    const TableEntry* table = tables.Find(id);
    rocksdb::ColumnFamilyHandle* column = store.column(id);
    if (table == nullptr || column == nullptr) continue;
    const uint32_t column_id = column->GetID();
    auto [begin, end] = std::equal_range(
        changes.rows.begin(), changes.rows.end(), ChangeLog::Row{column_id, 0, 0},
        [](const ChangeLog::Row& a, const ChangeLog::Row& b) { return a.column < b.column; });
    if (begin == end && part.replaced.empty()) continue;
    const std::string path = DeltaFilePath(rank, id, executor.index());
    DeltaFileWriter writer((std::filesystem::path(delta_dir) / path).string());
    SPARTA_RETURN_IF_ERROR(
        WriteTable(executor, *table, std::span<const ChangeLog::Row>(begin, end), part.replaced, &writer));
    SPARTA_RETURN_IF_ERROR(writer.Finish());
    if (writer.rows() == 0) continue;  // no file was made
    pb::DeltaFile& file = part.files.emplace_back();
    file.set_path(path);
    file.set_table(id);
    file.set_rows(writer.rows());
    part.rows += writer.rows();
  }
  return part;
}

}  // namespace sparta
