#include "server/checkpoint_part.h"

#include <atomic>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <latch>
#include <map>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_files.h"
#include "common/delta_files.h"
#include "server/delta_part.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace sparta {

void OnEveryExecutor(Executors executors, const std::function<void(ShardExecutor&)>& fn) {
  std::latch finished(static_cast<std::ptrdiff_t>(executors.size()));
  for (const auto& e : executors) {
    ShardExecutor* executor = e.get();
    ShardTask task;
    task.control = [&fn, &finished, executor] {
      fn(*executor);
      finished.count_down();
    };
    executor->Submit(std::move(task));
  }
  finished.wait();
}

absl::StatusOr<pb::CheckpointInfo> CutCheckpointPart(const pb::CheckpointInfo& request, int rank, RowStore* store,
                                                     const TableRegistry& tables, Executors executors,
                                                     const ShardView& view) {
  if (store == nullptr) return absl::FailedPreconditionError("no storage.path: nothing to checkpoint");
  const auto start = std::chrono::steady_clock::now();
  store->ResumeAfterFailure();  // a checkpoint that failed before (a full disk) is retried
  const bool publish = !request.delta_dir().empty();
  const std::string delta_part = publish ? DeltaPartDir(request.delta_dir(), rank) : std::string();
  if (publish) {
    // A server that does not log its writes has no delta to give: a
    // follower would silently miss changes.
    for (const auto& e : executors) {
      if (!e->logs_changes()) {
        return absl::FailedPreconditionError(
            "asked to publish a model version, but this server was started without serving.publish_every "
            "(every daemon of a job must have the same configuration)");
      }
    }
    std::error_code ec;
    std::filesystem::create_directories(delta_part, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("creating ", delta_part, ": ", ec.message()));
  }
  const auto leads = [&view, rank](uint32_t shard) {
    return shard < view.num_shards() && view.owner(shard) == static_cast<uint32_t>(rank);
  };
  std::atomic<size_t> written{0};
  absl::Status failed;
  std::vector<uint64_t> table_rows;  // what the part will hold, for the manifest
  uint64_t rows = 0;
  DeltaPart delta;
  std::mutex mu;
  OnEveryExecutor(executors, [&](ShardExecutor& e) {
    auto n = e.PersistChanged();
    absl::StatusOr<DeltaPart> part = DeltaPart();
    if (n.ok() && publish) {
      part = WriteDeltaPart(e, *store, tables, request.version(), request.base(), leads, request.delta_dir(), rank);
    }
    std::lock_guard<std::mutex> lock(mu);
    e.CountRowsByTable(&table_rows);
    rows += e.rows();
    if (!n.ok()) {
      failed = n.status();
    } else if (!part.ok()) {
      failed = part.status();
    } else {
      written += *n;
      delta.rows += part->rows;
      delta.replaced.insert(delta.replaced.end(), part->replaced.begin(), part->replaced.end());
      delta.files.insert(delta.files.end(), part->files.begin(), part->files.end());
    }
  });
  SPARTA_RETURN_IF_ERROR(failed);
  if (!request.publish_only()) SPARTA_RETURN_IF_ERROR(store->Checkpoint(CheckpointPartDir(request.dir(), rank)));
  pb::CheckpointInfo done;
  done.set_version(request.version());
  done.set_dir(request.dir());
  done.set_rows(rows);
  done.set_delta_rows(delta.rows);
  std::sort(delta.replaced.begin(), delta.replaced.end());
  for (uint32_t shard : delta.replaced) done.add_replaced_shards(shard);
  for (pb::DeltaFile& file : delta.files) *done.add_delta_files() = std::move(file);
  for (uint32_t id = 0; id < kMaxTables; ++id) {
    if (const TableEntry* t = tables.Find(id)) {
      *done.add_tables() = t->spec;
      done.add_table_rows(id < table_rows.size() ? table_rows[id] : 0);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (request.publish_only()) {
    spdlog::info("model version {}: {} changed rows published in {:.3f} s", request.version(), delta.rows, seconds);
  } else {
    spdlog::info("checkpoint {}: {} changed rows written{}, cut in {:.3f} s", request.version(), written.load(),
                 publish ? absl::StrCat(" (", delta.rows, " published)") : std::string(), seconds);
  }
  return done;
}

absl::Status RestoreCheckpointPart(const std::string& dir, const ShardView& view, uint32_t rank, bool wal,
                                   uint64_t step, TableRegistry* tables, RowStore* store, Executors executors) {
  const auto start = std::chrono::steady_clock::now();
  SPARTA_ASSIGN_OR_RETURN(pb::CheckpointManifest manifest, ReadManifest(dir));
  SPARTA_ASSIGN_OR_RETURN(const auto by_source,
                          ShardsBySavingServer(dir, manifest, view.num_shards(),
                                               [&](uint32_t s) { return view.Holds(s, rank); }));
  uint64_t rows = 0;
  const size_t threads = executors.size();
  for (const auto& e : executors) e->ResumeAtStep(step);
  for (const pb::TableSpec& spec : manifest.tables()) {
    SPARTA_RETURN_IF_ERROR(tables->Create(spec));
    if (store != nullptr) SPARTA_RETURN_IF_ERROR(store->AddTable(spec.id()));
    const TableEntry& table = *tables->Find(spec.id());
    const size_t stride = spec.dim() + table.optimizer->StateFloats(spec.dim());
    absl::Status bad;
    for (const auto& [source, shards] : by_source) {
      SPARTA_RETURN_IF_ERROR(RowStore::ReadShards(
          CheckpointPartDir(dir, static_cast<int>(source)), spec.id(), shards,
          [&](uint32_t shard, uint64_t key, std::span<const float> row) {
            if (row.size() != stride && row.size() != stride + 1) {  // maybe with a stamp
              bad = absl::DataLossError(absl::StrCat(dir, ": table '", spec.name(), "' has a row of ", row.size(),
                                                     " floats; expected ", stride));
              return;
            }
            executors[shard % threads]->LoadRow(table, shard, key, row);
            ++rows;
          }));
      SPARTA_RETURN_IF_ERROR(bad);
    }
  }
  for (const auto& e : executors) {
    // Written now when a log of writes says what changed since this
    // checkpoint's version (serving.publish_every): the restored rows are
    // that version, and the job's first published delta goes on from it
    // without them.
    if (store != nullptr && (wal || e->logs_changes())) SPARTA_RETURN_IF_ERROR(e->PersistChanged().status());
    if (e->logs_changes()) e->CutChanges(manifest.version(), manifest.version());
  }
  spdlog::info("restored {} rows of {} tables from {} (saved by {} servers) in {:.3f} s", rows,
               manifest.tables_size(), dir, manifest.servers(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return absl::OkStatus();
}

}  // namespace sparta
