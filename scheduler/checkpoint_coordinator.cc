#include "scheduler/checkpoint_coordinator.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_files.h"
#include "common/delta_files.h"
#include "common/logging.h"

namespace sparta {

CheckpointCoordinator::CheckpointCoordinator(const Config& config, Hooks hooks)
    : config_(config), hooks_(std::move(hooks)) {
  // Numbering goes on from what earlier runs left, so a resumed job never
  // overwrites the checkpoint it resumed from.
  if (enabled()) {
    const auto versions = ListCheckpoints(config_.storage.path);
    if (!versions.empty()) last_version_ = versions.back();
  }
  version_ = last_version_;
  // Versions published as deltas too: a follower serving one of them must
  // never see a lower number come after it.
  if (enabled()) {
    for (const DeltaRef& delta : ListDeltas(config_.storage.path)) version_ = std::max(version_, delta.version);
  }
}

void CheckpointCoordinator::BeginJob(uint64_t restored) {
  base_ = restored;
  if (enabled() && publishing()) PruneDeltas(config_.storage.path, ~uint64_t{0});
}

std::string CheckpointCoordinator::DirOf(uint64_t version) const {
  return (std::filesystem::path(CheckpointsDir(config_.storage.path)) / CheckpointName(version)).string();
}

void CheckpointCoordinator::TakeOver(uint64_t version) {
  if (!enabled()) return;
  const auto versions = ListCheckpoints(config_.storage.path);
  version_ = std::max(version, versions.empty() ? 0 : versions.back());
  last_version_ = version_;
  // The servers' change logs keep everything since the last version they
  // were told was published: the newest complete delta (or checkpoint).
  base_ = version;
  for (const DeltaRef& delta : ListDeltas(config_.storage.path)) {
    base_ = std::max(base_, delta.version);
    version_ = std::max(version_, delta.version);
  }
  // The rollback target is the job's own newest checkpoint; a newer folder
  // on disk is not known to be whole.
  published_version_ = version;
  if (version > 0) published_dir_ = DirOf(version);
}

void CheckpointCoordinator::Publish() {
  if (!enabled() || !publishing() || busy()) return;
  if (delta_rows_since_checkpoint_ > std::max<uint64_t>(checkpoint_rows_, 100000)) {
    return StartCut(absl::StrCat("the ", delta_rows_since_checkpoint_, " rows published since the last checkpoint ",
                                 "outgrew it"),
                    nullptr, /*publish_only=*/false);
  }
  StartCut(absl::StrCat("every ", config_.serving.publish_every), nullptr, /*publish_only=*/true);
}

void CheckpointCoordinator::Start(const std::string& why, std::function<void()> then) {
  if (!enabled()) {
    spdlog::warn("checkpoint requested ({}) but storage.path is not set", why);
    if (then) then();
    return;
  }
  if (busy()) {
    // Requests that come during a checkpoint collapse into one that starts
    // right after it (so the end-of-job checkpoint is never lost).
    spdlog::info("checkpoint requested ({}) while checkpoint {} is running; it will follow", why, version_);
    auto earlier = std::move(queued_.then);
    queued_ = {why, [earlier, then] {
                 if (earlier) earlier();
                 if (then) then();
               }};
    has_queued_ = true;
    return;
  }
  StartCut(why, std::move(then), /*publish_only=*/false);
}

void CheckpointCoordinator::StartCut(const std::string& why, std::function<void()> then, bool publish_only) {
  ++version_;
  publish_only_ = publish_only;
  // An empty folder `name` under `parent` (what a killed cut left there goes).
  auto fresh = [](const std::string& parent, const std::string& name, std::string* dir) {
    *dir = (std::filesystem::path(parent) / (name + ".tmp")).string();
    std::error_code ec;
    std::filesystem::remove_all(*dir, ec);
    std::filesystem::create_directories(*dir, ec);
    return ec ? absl::StrCat("cannot create ", *dir, ": ", ec.message()) : std::string();
  };
  dir_.clear();
  delta_dir_.clear();
  std::string error;
  if (!publish_only) error = fresh(CheckpointsDir(config_.storage.path), CheckpointName(version_), &dir_);
  if (error.empty() && publishing()) {
    error = fresh(VersionsDir(config_.storage.path), DeltaName(version_, base_), &delta_dir_);
  }
  if (!error.empty()) return hooks_.fail(error);
  then_ = std::move(then);
  worker_steps_.clear();
  unit_bytes_.clear();
  server_done_.clear();
  started_ = std::chrono::steady_clock::now();
  phase_ = Phase::kPausing;
  spdlog::info("{} {} ({}): pausing workers", CutName(), version_, why);
  pb::Header pause;
  pause.set_type(pb::PAUSE);
  pause.mutable_checkpoint()->set_version(version_);
  // Where a worker writes state of its own (worker/worker.h); none for a
  // cut that is only a published version.
  pause.mutable_checkpoint()->set_dir(dir_);
  hooks_.broadcast(pause, pb::WORKER);
}

void CheckpointCoordinator::OnPaused(int worker_rank, const pb::CheckpointInfo& info,
                                     const pb::WorkerProgress& progress, const std::string& error) {
  if (phase_ != Phase::kPausing || info.version() != version_) return;
  if (!error.empty()) return Failed(absl::StrCat("worker-", worker_rank, ": ", error));
  worker_steps_[worker_rank] = info.steps();
  for (const auto& [unit, p] : progress.units()) unit_bytes_[unit] = p.trained_bytes();
  CutIfAllPaused();
}

void CheckpointCoordinator::OnWorkerLost() {
  if (phase_ == Phase::kPausing) CutIfAllPaused();
}

void CheckpointCoordinator::CutIfAllPaused() {
  if (hooks_.live_workers) {
    for (int rank : hooks_.live_workers()) {
      if (!worker_steps_.count(rank)) return;
    }
  } else if (static_cast<int>(worker_steps_.size()) < config_.cluster.workers) {
    return;
  }
  phase_ = Phase::kCutting;
  spdlog::info("{} {}: all workers paused; servers cutting", CutName(), version_);
  pb::Header cut;
  cut.set_type(pb::CHECKPOINT);
  cut.mutable_checkpoint()->set_version(version_);
  cut.mutable_checkpoint()->set_dir(dir_);
  cut.mutable_checkpoint()->set_delta_dir(delta_dir_);
  cut.mutable_checkpoint()->set_base(base_);
  cut.mutable_checkpoint()->set_publish_only(publish_only_);
  hooks_.broadcast(cut, pb::SERVER);
}

void CheckpointCoordinator::OnServerDone(int server_rank, const pb::Header& h) {
  if (phase_ != Phase::kCutting || h.checkpoint().version() != version_) return;
  if (!h.error().empty()) return Failed(absl::StrCat("server-", server_rank, ": ", h.error()));
  server_done_[server_rank] = h.checkpoint();
  if (static_cast<int>(server_done_.size()) < hooks_.live_servers()) return;
  Finish();
}

void CheckpointCoordinator::Failed(const std::string& error) {
  // A full disk or a flaky volume: the job trains on and tries again (at
  // once for a checkpoint something waits on, else at the next interval),
  // the older checkpoints stay as they are. Only repeated failures end it.
  if (++failures_ >= kMaxFailures) {
    return hooks_.fail(absl::StrCat("checkpoints failed ", failures_, " times in a row (the newest complete one ",
                                    "is version ", last_version_, "); the last error: ", error));
  }
  spdlog::warn("{} {} failed ({} of {} failures in a row before the job fails): {}", CutName(), version_, failures_,
               kMaxFailures, error);
  Abandon("it failed");
}

void CheckpointCoordinator::Abandon(const std::string& why) {
  if (!busy()) return;
  spdlog::warn("{} {} abandoned: {}", CutName(), version_, why);
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  if (!delta_dir_.empty()) std::filesystem::remove_all(delta_dir_, ec);
  phase_ = Phase::kIdle;
  pb::Header resume;
  resume.set_type(pb::RESUME);
  hooks_.broadcast(resume, pb::WORKER);
  if (then_ || has_queued_) {
    auto then = std::move(then_);
    then_ = nullptr;
    Start(absl::StrCat("again after: ", why), std::move(then));
  }
}

bool CheckpointCoordinator::PublishDeltaOfCut() {
  pb::DeltaManifest delta;
  delta.set_version(version_);
  delta.set_base(base_);
  delta.set_servers(static_cast<int32_t>(server_done_.size()));
  for (uint32_t owner : hooks_.shard_owner()) delta.add_shard_owner(owner);
  std::map<uint32_t, pb::TableSpec> tables;
  for (const auto& [rank, done] : server_done_) {
    for (const pb::TableSpec& t : done.tables()) tables[t.id()] = t;
    delta.set_rows(delta.rows() + done.delta_rows());
    for (uint32_t shard : done.replaced_shards()) delta.add_replaced_shards(shard);
    for (const pb::DeltaFile& file : done.delta_files()) *delta.add_files() = file;
  }
  for (const auto& [id, spec] : tables) *delta.add_tables() = spec;
  delta.set_unix_time(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  absl::Status st = WriteDeltaManifest(delta_dir_, delta);
  if (st.ok()) st = PublishDelta(delta_dir_);
  if (!st.ok()) {
    Failed(std::string(st.message()));
    return false;
  }
  base_ = version_;
  delta_rows_since_checkpoint_ += delta.rows();
  spdlog::info("model version {} published: {} rows changed since version {}", version_, delta.rows(), delta.base());
  return true;
}

void CheckpointCoordinator::Finish() {
  if (publishing() && !PublishDeltaOfCut()) return;
  if (!publish_only_ && !PublishCheckpointOfCut()) return;
  failures_ = 0;
  phase_ = Phase::kIdle;
  pb::Header resume;
  resume.set_type(pb::RESUME);
  hooks_.broadcast(resume, pb::WORKER);
  if (has_queued_) {
    has_queued_ = false;
    Queued next = std::move(queued_);
    queued_ = {};
    auto then = std::move(then_);
    then_ = nullptr;
    if (then) then();
    Start(next.why, std::move(next.then));
    return;
  }
  if (then_) {
    auto then = std::move(then_);
    then_ = nullptr;
    then();
  }
}

bool CheckpointCoordinator::PublishCheckpointOfCut() {
  pb::CheckpointManifest manifest;
  manifest.set_version(version_);
  manifest.set_servers(static_cast<int32_t>(server_done_.size()));
  manifest.set_workers(config_.cluster.workers);
  // Workers are paused, so the map cannot change before the servers cut.
  for (uint32_t owner : hooks_.shard_owner()) manifest.add_shard_owner(owner);
  std::map<uint32_t, pb::TableSpec> tables;  // every server declares every table
  uint64_t rows = 0;
  for (const auto& [rank, done] : server_done_) {
    for (int i = 0; i < done.tables_size(); ++i) {
      tables[done.tables(i).id()] = done.tables(i);
      pb::PartRows* part = manifest.add_parts();
      part->set_server(rank);
      part->set_table(done.tables(i).id());
      part->set_rows(i < done.table_rows_size() ? done.table_rows(i) : 0);
    }
    rows += done.rows();
  }
  for (const auto& [id, spec] : tables) *manifest.add_tables() = spec;
  for (int w = 0; w < config_.cluster.workers; ++w) manifest.add_worker_steps(worker_steps_[w]);
  if (hooks_.work_left) {
    // Every worker is paused with its pushes drained: what each had trained
    // of its units is exactly what the servers cut.
    *manifest.mutable_work() = hooks_.work_left([this](uint64_t unit) -> uint64_t {
      auto it = unit_bytes_.find(unit);
      return it == unit_bytes_.end() ? 0 : it->second;
    });
  }
  manifest.set_unix_time(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  manifest.set_rows(rows);
  absl::Status st = WriteManifest(dir_, manifest);
  if (st.ok()) st = PublishCheckpoint(config_.storage.path, version_, config_.storage.keep);
  if (!st.ok()) {
    Failed(std::string(st.message()));
    return false;
  }
  if (publishing()) {
    // The deltas up to the checkpoint before this one are in it; those
    // since stay, for followers a little behind. So do the newest
    // kDeltasKept whatever checkpoints hold them: two checkpoints close
    // together (one because deltas outgrew the last, then the job's final
    // one) left only what the second covered, and a serving cluster one
    // poll behind found the delta that went on from its version gone.
    PruneDeltas(config_.storage.path, published_version_, "", kDeltasKept);
    delta_rows_since_checkpoint_ = 0;
    checkpoint_rows_ = rows;
  }
  last_version_ = published_version_ = version_;
  published_dir_ = DirOf(version_);
  last_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  spdlog::info("checkpoint {} published: {} rows in {:.3f} s at {}", version_, rows, last_seconds_, published_dir_);
  return true;
}

}  // namespace sparta
