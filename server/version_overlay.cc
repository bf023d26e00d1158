#include "server/version_overlay.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_files.h"
#include "common/delta_files.h"
#include "common/status_macros.h"
#include "server/delta_file.h"
#include "server/row_store.h"

namespace sparta {

absl::StatusOr<std::shared_ptr<const VersionOverlay>> VersionOverlay::Read(
    const std::string& delta_dir, const std::function<bool(uint32_t shard)>& holds,
    const std::function<uint32_t(uint32_t table)>& dim_of) {
  SPARTA_ASSIGN_OR_RETURN(const pb::DeltaManifest manifest, ReadDeltaManifest(delta_dir));
  auto overlay = std::make_shared<VersionOverlay>();
  overlay->version_ = manifest.version();
  overlay->base_ = manifest.base();
  for (uint32_t shard : manifest.replaced_shards()) {
    if (holds(shard) && overlay->replaced_.insert(shard).second) overlay->replaced_list_.push_back(shard);
  }
  for (const pb::TableSpec& spec : manifest.tables()) SPARTA_RETURN_IF_ERROR(CheckDim(delta_dir, spec, dim_of));
  SPARTA_ASSIGN_OR_RETURN(const auto files_by_table, DeltaFilesByTable(delta_dir, manifest));
  for (const auto& [id, files] : files_by_table) {
    const uint32_t dim = dim_of(id);
    if (dim == 0) continue;  // a table no request can name here
    overlay->tables_[id].dim = dim;
    absl::Status bad;
    for (const DeltaFileRef& file : files) {
      SPARTA_RETURN_IF_ERROR(ReadDeltaFile(file, [&](uint32_t shard, uint64_t key, std::span<const float> weights) {
        if (!bad.ok() || !holds(shard)) return;
        if (!weights.empty() && weights.size() != dim) {
          bad = absl::DataLossError(absl::StrCat(file.path, ": a row of ", weights.size(), " floats for key ", key,
                                                 "; the table's rows have ", dim));
          return;
        }
        overlay->Add(id, dim, shard, key, weights);
      }));
      SPARTA_RETURN_IF_ERROR(bad);
    }
  }
  return std::shared_ptr<const VersionOverlay>(std::move(overlay));
}

absl::StatusOr<std::shared_ptr<const VersionOverlay>> VersionOverlay::ReadCheckpoint(
    const std::string& checkpoint_dir, uint64_t base, uint32_t num_shards,
    const std::function<bool(uint32_t shard)>& holds, const std::function<uint32_t(uint32_t table)>& dim_of) {
  SPARTA_ASSIGN_OR_RETURN(const pb::CheckpointManifest manifest, ReadManifest(checkpoint_dir));
  SPARTA_ASSIGN_OR_RETURN(const auto by_source, ShardsBySavingServer(checkpoint_dir, manifest, num_shards, holds));
  auto overlay = std::make_shared<VersionOverlay>();
  overlay->version_ = manifest.version();
  overlay->base_ = base;
  for (const auto& [source, shards] : by_source) {
    overlay->replaced_list_.insert(overlay->replaced_list_.end(), shards.begin(), shards.end());
  }
  std::sort(overlay->replaced_list_.begin(), overlay->replaced_list_.end());
  overlay->replaced_.insert(overlay->replaced_list_.begin(), overlay->replaced_list_.end());
  for (const pb::TableSpec& spec : manifest.tables()) {
    SPARTA_RETURN_IF_ERROR(CheckDim(checkpoint_dir, spec, dim_of));
    const uint32_t dim = dim_of(spec.id());
    if (dim == 0) continue;
    overlay->tables_[spec.id()].dim = dim;
    absl::Status bad;
    for (const auto& [source, shards] : by_source) {
      SPARTA_RETURN_IF_ERROR(RowStore::ReadShards(
          CheckpointPartDir(checkpoint_dir, static_cast<int>(source)), spec.id(), shards,
          [&](uint32_t shard, uint64_t key, std::span<const float> row) {
            // A saved row is its weights, then its optimizer state (and
            // maybe a stamp): serving needs the weights.
            if (!bad.ok()) return;
            if (row.size() < dim) {
              bad = absl::DataLossError(absl::StrCat(checkpoint_dir, ": table '", spec.name(), "' has a row of ",
                                                     row.size(), " floats for key ", key, "; its weights are ",
                                                     dim));
              return;
            }
            overlay->Add(spec.id(), dim, shard, key, row.first(dim));
          }));
      SPARTA_RETURN_IF_ERROR(bad);
    }
  }
  return std::shared_ptr<const VersionOverlay>(std::move(overlay));
}

absl::Status VersionOverlay::CheckDim(const std::string& where, const pb::TableSpec& spec,
                                      const std::function<uint32_t(uint32_t table)>& dim_of) {
  const uint32_t dim = dim_of(spec.id());
  if (dim != 0 && dim != spec.dim()) {
    return absl::FailedPreconditionError(absl::StrCat(where, ": table ", spec.id(), " '", spec.name(),
                                                      "' has rows of ", spec.dim(), " floats; this server's of ",
                                                      dim));
  }
  return absl::OkStatus();
}

void VersionOverlay::Add(uint32_t table_id, uint32_t dim, uint32_t shard, uint64_t key,
                         std::span<const float> weights) {
  Table& table = tables_[table_id];
  ++rows_;
  Entry& entry = table.index[key];
  entry.shard = shard;
  if (weights.empty()) {
    entry.row = kDeleted;
    return;
  }
  entry.row = static_cast<uint32_t>(table.weights.size() / dim);
  table.weights.insert(table.weights.end(), weights.begin(), weights.end());
}

VersionOverlay::Found VersionOverlay::Find(uint32_t table, uint32_t shard, uint64_t key,
                                           const float** weights) const {
  auto t = tables_.find(table);
  if (t != tables_.end()) {
    auto it = t->second.index.find(key);
    if (it != t->second.index.end()) {
      if (it->second.row == kDeleted) return Found::kDeleted;
      *weights = t->second.weights.data() + size_t{it->second.row} * t->second.dim;
      return Found::kRow;
    }
  }
  return replaced_.contains(shard) ? Found::kDeleted : Found::kNo;
}

void VersionOverlay::ForEachRow(
    uint32_t table, const std::function<void(uint32_t shard, uint64_t key, std::span<const float> weights)>& visit) const {
  auto t = tables_.find(table);
  if (t == tables_.end()) return;
  const Table& rows = t->second;
  for (const auto& [key, entry] : rows.index) {
    if (entry.row == kDeleted) {
      visit(entry.shard, key, {});
    } else {
      visit(entry.shard, key, std::span<const float>(rows.weights.data() + size_t{entry.row} * rows.dim, rows.dim));
    }
  }
}

std::vector<uint32_t> VersionOverlay::tables() const {
  std::vector<uint32_t> ids;
  for (const auto& [id, table] : tables_) ids.push_back(id);
  return ids;
}

}  // namespace sparta
