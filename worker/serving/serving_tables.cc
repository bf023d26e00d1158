#include "worker/serving/serving_tables.h"

#include <chrono>
#include <cstring>
#include <map>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_files.h"
#include "common/status_macros.h"
#include "server/initializer.h"
#include "server/row_store.h"
#include "server/table_policy.h"

namespace sparta {

absl::StatusOr<std::shared_ptr<const ServingTables>> ServingTables::FromCheckpoint(
    const std::string& dir, const std::vector<pb::TableSpec>& specs, const Config& config) {
  const auto start = std::chrono::steady_clock::now();
  SPARTA_ASSIGN_OR_RETURN(pb::CheckpointManifest manifest, ReadManifest(dir));
  std::shared_ptr<ServingTables> tables(new ServingTables());
  tables->version_ = manifest.version();
  // Each shard is read from the part of the server that held it at the cut.
  std::map<uint32_t, std::vector<uint32_t>> by_source;
  for (int s = 0; s < manifest.shard_owner_size(); ++s) by_source[manifest.shard_owner(s)].push_back(s);
  for (const pb::TableSpec& wanted : specs) {
    const pb::TableSpec* saved = nullptr;
    for (const pb::TableSpec& t : manifest.tables()) {
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
    const uint32_t dim = saved->dim();
    const bool dense = saved->kind() == pb::TableSpec::DENSE;
    const uint64_t blocks = dense ? (saved->dense_size() + dim - 1) / dim : 0;
    std::vector<bool> block_seen(blocks, false);
    if (dense) table.weights.resize(blocks * dim);
    absl::Status bad;
    for (const auto& [source, shards] : by_source) {
      SPARTA_RETURN_IF_ERROR(RowStore::ReadShards(
          CheckpointPartDir(dir, static_cast<int>(source)), saved->id(), shards,
          [&](uint32_t, uint64_t key, std::span<const float> row) {
            if (row.size() < dim) {
              bad = absl::DataLossError(absl::StrCat(dir, ": table '", saved->name(), "' has a row of ", row.size(),
                                                     " floats; expected at least ", dim));
              return;
            }
            if (dense) {
              if (key >= blocks) {
                bad = absl::DataLossError(
                    absl::StrCat(dir, ": dense table '", saved->name(), "' has block ", key, " of ", blocks));
                return;
              }
              std::memcpy(table.weights.data() + key * dim, row.data(), dim * sizeof(float));
              block_seen[key] = true;
              return;
            }
            auto [it, inserted] = table.index.try_emplace(key, static_cast<uint32_t>(table.index.size()));
            if (!inserted) return;  // a shard saved twice cannot happen; keep the first
            table.weights.insert(table.weights.end(), row.begin(), row.begin() + dim);
          }));
      SPARTA_RETURN_IF_ERROR(bad);
    }
    // A dense block no push ever reached holds its initial values.
    for (uint64_t b = 0; b < blocks; ++b) {
      if (!block_seen[b]) InitializeWeights(saved->initializer(), b, table.weights.data() + b * dim, dim);
    }
    tables->rows_ += dense ? blocks : table.index.size();
  }
  spdlog::info("loaded model version {} from {}: {} rows of {} tables in {:.3f} s", tables->version_, dir,
               tables->rows_, tables->tables_.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return std::shared_ptr<const ServingTables>(std::move(tables));
}

void ServingTables::Gather(size_t t, std::span<const uint64_t> keys, std::vector<float>* out) const {
  const Table& table = tables_[t];
  const uint32_t dim = table.spec.dim();
  out->resize(keys.size() * dim);
  float* dst = out->data();
  for (uint64_t key : keys) {
    if (auto it = table.index.find(key); it != table.index.end()) {
      std::memcpy(dst, table.weights.data() + static_cast<size_t>(it->second) * dim, dim * sizeof(float));
    } else if (table.admits_every_key) {
      InitializeWeights(table.spec.initializer(), key, dst, dim);
    } else {
      std::memset(dst, 0, dim * sizeof(float));
    }
    dst += dim;
  }
}

}  // namespace sparta
