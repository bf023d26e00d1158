#include "worker/serving/serving_tables.h"

#include <bit>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <cstring>
#include <map>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/container/flat_hash_set.h"
#include "common/checkpoint_files.h"
#include "common/delta_files.h"
#include "common/hash.h"
#include "common/status_macros.h"
#include "server/initializer.h"
#include "server/delta_file.h"
#include "server/row_store.h"
#include "server/table_policy.h"

namespace sparta {

absl::StatusOr<std::shared_ptr<ServingTables>> ServingTables::MakeTables(const std::string& dir,
                                                                         const std::vector<pb::TableSpec>& saved_tables,
                                                                         const std::vector<pb::TableSpec>& specs,
                                                                         const Config& config) {
  std::shared_ptr<ServingTables> tables(new ServingTables());
  for (const pb::TableSpec& wanted : specs) {
    const pb::TableSpec* saved = nullptr;
    for (const pb::TableSpec& t : saved_tables) {
      if (t.name() == wanted.name()) saved = &t;
    }
    if (saved == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " holds no table '", wanted.name(), "', which the model declares: was it trained with "
                       "another model?"));
    }
    if (saved->kind() != wanted.kind() || saved->dim() != wanted.dim() || saved->dense_size() != wanted.dense_size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          dir, ": table '", wanted.name(), "' was saved with dim ", saved->dim(), " (", saved->dense_size(),
          " dense floats); the model declares dim ", wanted.dim(), " (", wanted.dense_size(),
          "): the serving config must match the training job's model keys"));
    }
    Table& table = tables->tables_.emplace_back();
    table.spec = *saved;
    table.admits_every_key = ResolveTablePolicy(*saved, config).admits_every_key();
    if (saved->kind() == pb::TableSpec::DENSE) {
      // A dense block no push ever reached holds its initial values.
      const uint32_t dim = saved->dim();
      const uint64_t blocks = (saved->dense_size() + dim - 1) / dim;
      table.weights.resize(blocks * dim);
      for (uint64_t b = 0; b < blocks; ++b) {
        InitializeWeights(saved->initializer(), b, table.weights.data() + b * dim, dim);
      }
    } else {
      table.base = std::make_shared<const Rows>();
    }
  }
  return tables;
}

void ServingTables::CountRows() {
  rows_ = 0;
  for (const Table& t : tables_) {
    if (t.spec.kind() == pb::TableSpec::DENSE) {
      rows_ += t.weights.size() / t.spec.dim();
      continue;
    }
    rows_ += t.base->index.size();
    if (t.overlay) {
      for (const auto& [key, row] : t.overlay->index) {
        const bool in_base = t.base->index.contains(key);
        if (row == kDeleted && in_base) --rows_;
        if (row != kDeleted && !in_base) ++rows_;
      }
    }
  }
}

absl::StatusOr<std::shared_ptr<const ServingTables>> ServingTables::Empty(const std::string& dir,
                                                                        const std::vector<pb::TableSpec>& saved,
                                                                        const std::vector<pb::TableSpec>& specs,
                                                                        const Config& config) {
  SPARTA_ASSIGN_OR_RETURN(std::shared_ptr<ServingTables> tables, MakeTables(dir, saved, specs, config));
  tables->CountRows();
  return std::shared_ptr<const ServingTables>(std::move(tables));
}

absl::StatusOr<std::shared_ptr<const ServingTables>> ServingTables::FromCheckpoint(
    const std::string& dir, const std::vector<pb::TableSpec>& specs, const Config& config) {
  const auto start = std::chrono::steady_clock::now();
  SPARTA_ASSIGN_OR_RETURN(pb::CheckpointManifest manifest, ReadManifest(dir));
  SPARTA_ASSIGN_OR_RETURN(
      std::shared_ptr<ServingTables> tables,
      MakeTables(dir, std::vector<pb::TableSpec>(manifest.tables().begin(), manifest.tables().end()), specs, config));
  tables->version_ = manifest.version();
  // Each shard is read from the part of the server that held it at the cut.
  std::map<uint32_t, std::vector<uint32_t>> by_source;
  for (int s = 0; s < manifest.shard_owner_size(); ++s) by_source[manifest.shard_owner(s)].push_back(s);
  for (Table& table : tables->tables_) {
    const pb::TableSpec& saved = table.spec;
    const uint32_t dim = saved.dim();
    const bool dense = saved.kind() == pb::TableSpec::DENSE;
    const uint64_t blocks = dense ? table.weights.size() / dim : 0;
    auto rows = std::make_shared<Rows>();
    absl::Status bad;
    for (const auto& [source, shards] : by_source) {
      SPARTA_RETURN_IF_ERROR(RowStore::ReadShards(
          CheckpointPartDir(dir, static_cast<int>(source)), saved.id(), shards,
          [&](uint32_t, uint64_t key, std::span<const float> row) {
            if (row.size() < dim) {
              bad = absl::DataLossError(absl::StrCat(dir, ": table '", saved.name(), "' has a row of ", row.size(),
                                                     " floats; expected at least ", dim));
              return;
            }
            if (dense) {
              if (key >= blocks) {
                bad = absl::DataLossError(
                    absl::StrCat(dir, ": dense table '", saved.name(), "' has block ", key, " of ", blocks));
                return;
              }
              std::memcpy(table.weights.data() + key * dim, row.data(), dim * sizeof(float));
              return;
            }
            auto [it, inserted] = rows->index.try_emplace(key, static_cast<uint32_t>(rows->index.size()));
            if (!inserted) return;  // a shard saved twice cannot happen; keep the first
            rows->weights.insert(rows->weights.end(), row.begin(), row.begin() + dim);
          }));
      SPARTA_RETURN_IF_ERROR(bad);
    }
    if (!dense) table.base = std::move(rows);
  }
  tables->CountRows();
  spdlog::info("loaded model version {} from {}: {} rows of {} tables in {:.3f} s", tables->version_, dir,
               tables->rows_, tables->tables_.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return std::shared_ptr<const ServingTables>(std::move(tables));
}


absl::StatusOr<std::shared_ptr<const ServingTables>> ServingTables::WithDelta(const std::string& delta_dir) const {
  const auto start = std::chrono::steady_clock::now();
  SPARTA_ASSIGN_OR_RETURN(pb::DeltaManifest manifest, ReadDeltaManifest(delta_dir));
  if (manifest.base() != version_) {
    return absl::AbortedError(absl::StrCat(delta_dir, " goes on from version ", manifest.base(),
                                                      "; the version served is ", version_));
  }
  const uint32_t num_shards = static_cast<uint32_t>(manifest.shard_owner_size());
  if (num_shards == 0 || (num_shards & (num_shards - 1)) != 0) {
    return absl::DataLossError(absl::StrCat(delta_dir, ": a shard map of ", num_shards, " shards"));
  }
  const int shard_bits = std::countr_zero(num_shards);
  const absl::flat_hash_set<uint32_t> replaced(manifest.replaced_shards().begin(), manifest.replaced_shards().end());
  SPARTA_ASSIGN_OR_RETURN(const auto files, DeltaFilesByTable(delta_dir, manifest));
  std::shared_ptr<ServingTables> next(new ServingTables(*this));
  next->version_ = manifest.version();
  uint64_t changed = 0;
  for (Table& table : next->tables_) {
    const uint32_t dim = table.spec.dim();
    for (const pb::TableSpec& t : manifest.tables()) {
      if (t.id() == table.spec.id() && (t.dim() != dim || t.name() != table.spec.name())) {
        return absl::FailedPreconditionError(absl::StrCat(delta_dir, ": table ", t.id(), " is '", t.name(),
                                                          "' of dim ", t.dim(), "; the version served has '",
                                                          table.spec.name(), "' of dim ", dim));
      }
    }
    auto found = files.find(table.spec.id());
    const bool dense = table.spec.kind() == pb::TableSpec::DENSE;
    if (found == files.end() && (dense || replaced.empty())) continue;
    absl::Status bad;
    auto check = [&](uint64_t key, std::span<const float> weights) {
      if (!weights.empty() && weights.size() != dim) {
        bad = absl::DataLossError(absl::StrCat(delta_dir, ": table '", table.spec.name(), "' has a row of ",
                                               weights.size(), " floats for key ", key, "; expected ", dim));
      }
      return bad.ok();
    };
    if (dense) {
      const uint64_t blocks = table.weights.size() / dim;
      for (const DeltaFileRef& file : found->second) {
        SPARTA_RETURN_IF_ERROR(ReadDeltaFile(file, [&](uint32_t, uint64_t block, std::span<const float> weights) {
          if (!check(block, weights) || block >= blocks) return;
          float* out = table.weights.data() + block * dim;
          if (weights.empty()) {
            InitializeWeights(table.spec.initializer(), block, out, dim);
          } else {
            std::memcpy(out, weights.data(), dim * sizeof(float));
          }
          ++changed;
        }));
      }
      SPARTA_RETURN_IF_ERROR(bad);
      continue;
    }
    auto overlay = table.overlay ? std::make_shared<Rows>(*table.overlay) : std::make_shared<Rows>();
    if (!replaced.empty()) {
      // Such a shard's part holds every row it has: whatever is not in it is gone.
      for (const auto& [key, row] : table.base->index) {
        if (replaced.contains(ShardOf(key, shard_bits))) overlay->index[key] = kDeleted;
      }
      for (auto& [key, row] : overlay->index) {
        if (replaced.contains(ShardOf(key, shard_bits))) row = kDeleted;
      }
    }
    if (found != files.end()) {
      for (const DeltaFileRef& file : found->second) {
        SPARTA_RETURN_IF_ERROR(ReadDeltaFile(file, [&](uint32_t, uint64_t key, std::span<const float> weights) {
          if (!check(key, weights)) return;
          ++changed;
          if (weights.empty()) {
            overlay->index[key] = kDeleted;
            return;
          }
          auto [it, inserted] = overlay->index.try_emplace(key, kDeleted);
          if (it->second == kDeleted) {
            it->second = static_cast<uint32_t>(overlay->weights.size() / dim);
            overlay->weights.insert(overlay->weights.end(), weights.begin(), weights.end());
          } else {
            std::memcpy(overlay->weights.data() + size_t{it->second} * dim, weights.data(), dim * sizeof(float));
          }
        }));
      }
      SPARTA_RETURN_IF_ERROR(bad);
    }
    if (overlay->index.size() > table.base->index.size() / 2 + 65536) {
      // Folded: lookups stay one probe of each map, and copying the overlay
      // for each version stays a fraction of the table.
      auto folded = std::make_shared<Rows>();
      folded->index.reserve(table.base->index.size() + overlay->index.size());
      auto add = [&](uint64_t key, const float* row) {
        folded->index.emplace(key, static_cast<uint32_t>(folded->weights.size() / dim));
        folded->weights.insert(folded->weights.end(), row, row + dim);
      };
      for (const auto& [key, row] : table.base->index) {
        if (!overlay->index.contains(key)) add(key, table.base->weights.data() + size_t{row} * dim);
      }
      for (const auto& [key, row] : overlay->index) {
        if (row != kDeleted) add(key, overlay->weights.data() + size_t{row} * dim);
      }
      table.base = std::move(folded);
      table.overlay = nullptr;
    } else {
      table.overlay = std::move(overlay);
    }
  }
  next->CountRows();
  spdlog::info("model version {} (from {}): {} rows changed, applied in {:.3f} s", next->version_, manifest.base(),
               changed, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return std::shared_ptr<const ServingTables>(std::move(next));
}

absl::Status ServingTables::Gather(size_t t, std::span<const uint64_t> keys, std::vector<float>* out) const {
  const Table& table = tables_[t];
  const uint32_t dim = table.spec.dim();
  out->resize(keys.size() * dim);
  float* dst = out->data();
  const Rows* overlay = table.overlay.get();
  const Rows& base = *table.base;
  for (uint64_t key : keys) {
    const float* row = nullptr;
    bool deleted = false;
    if (overlay != nullptr) {
      if (auto it = overlay->index.find(key); it != overlay->index.end()) {
        deleted = it->second == kDeleted;
        if (!deleted) row = overlay->weights.data() + static_cast<size_t>(it->second) * dim;
      }
    }
    if (row == nullptr && !deleted) {
      if (auto it = base.index.find(key); it != base.index.end()) {
        row = base.weights.data() + static_cast<size_t>(it->second) * dim;
      }
    }
    if (row != nullptr) {
      std::memcpy(dst, row, dim * sizeof(float));
    } else if (table.admits_every_key) {
      InitializeWeights(table.spec.initializer(), key, dst, dim);
    } else {
      std::memset(dst, 0, dim * sizeof(float));
    }
    dst += dim;
  }
  return absl::OkStatus();
}

}  // namespace sparta
