// JobCoordinator's state across schedulers and jobs: the state it saves
// for a scheduler that takes over (SaveState), taking over a running job
// from that state (TakeOverSavedJob), and choosing and checking the
// checkpoint a new job restores (PrepareRestore). A part of
// job_coordinator.cc, kept apart as RocksDB keeps DBImpl's parts; the
// same thread calls it.
#include <chrono>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checkpoint_files.h"
#include "common/logging.h"
#include "scheduler/checkpoint_verifier.h"
#include "scheduler/job_coordinator.h"

namespace sparta {

using Clock = Membership::Clock;

absl::StatusOr<bool> JobCoordinator::TakeOverSavedJob() {
  // A serving cluster keeps no state: its one input is serving.model, and
  // storage.path is the training job's, whose scheduler state it must not touch.
  if (config_.serving.cluster) {
    state_store_.reset();
    return false;
  }
  if (state_store_ == nullptr) {
    if (config_.storage.path.empty()) return false;
    auto store = LocalStateStore::Open((std::filesystem::path(config_.storage.path) / "scheduler").string());
    if (!store.ok()) return store.status();
    state_store_ = *std::move(store);
  }
  auto saved = state_store_->Load();
  if (!saved.ok()) return saved.status();
  if (!saved->has_value()) return false;
  const pb::SchedulerState& state = **saved;
  const double age =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() - state.saved_unix_time();
  const auto phase = static_cast<Phase>(state.phase());
  // The nodes wait scheduler_grace for a lost scheduler; after that the job
  // is gone, and so is one that ended. storage.restore always starts a new
  // job (from a checkpoint).
  if ((phase != Phase::kRunning && phase != Phase::kFlushing) || age > config_.cluster.scheduler_grace ||
      !config_.storage.restore.empty()) {
    return false;
  }
  const auto now = started_;
  for (const auto& n : state.nodes()) members_.Restore(n.info(), n.routing_id(), n.dead(), now);
  epoch_ = state.epoch();
  view_ = state.view();
  shard_map_.FromView(view_);
  const int moves = shard_map_.RestoreMoves(state.moves());
  for (const auto& [rank, report] : state.reports()) reports_[rank] = report;
  for (const auto& [rank, stats] : state.flushed()) flushed_[rank] = stats;
  restore_from_ = state.restore_from();
  restore_steps_.assign(state.restore_steps().begin(), state.restore_steps().end());
  dropped_messages_ = state.dropped_messages();
  if (state.has_work()) work_ = WorkDispatcher::FromState(state.work());
  workers_lost_ = state.workers_lost();
  if (state.servers_wanted() != 0) scaling_.RestoreWanted(static_cast<int>(state.servers_wanted()));
  barriers_.Load(state);
  for (uint32_t id : state.draining()) {
    const Membership::Node* node = members_.FindById(id);
    if (node == nullptr) continue;
    if (node->info.role() == pb::SERVER) {
      scaling_.RestoreDraining(id);
    } else {
      draining_workers_.insert(id);
      if (work_) work_->Drain(id);
    }
  }
  checkpoints_.TakeOver(state.checkpoint_version());
  saved_checkpoint_version_ = state.checkpoint_version();
  phase_ = Phase::kRunning;
  running_since_ = Clock::now();  // what this scheduler saw of it
  spdlog::warn("took over the running job from {} (saved {:.1f} s ago): epoch {}, {} nodes, {} shard moves, {} nodes "
               "draining",
               state_store_->where(), age, epoch_, state.nodes_size(), moves,
               draining_workers_.size() + scaling_.draining().size());
  // The end of the job starts over once every node has reconnected (a
  // message sent before that would be lost). A checkpoint the old scheduler
  // was taking is gone with it; nodes resume paused workers themselves when
  // they see a new scheduler.
  finish_after_resync_ = phase == Phase::kFlushing;
  for (const auto& node : members_.nodes()) {
    if (!node.dead) unheard_.insert(node.info.id());
  }
  return true;
}

bool JobCoordinator::SaveState(Clock::time_point now) {
  // A published checkpoint is saved at once: a scheduler that takes over
  // must not number its own the same.
  const bool changed = state_changed_ || checkpoints_.published_version() != saved_checkpoint_version_;
  // A view saved before it was sent is not saved again, but it is news.
  const bool news = changed || unreported_change_;
  state_changed_ = false;
  unreported_change_ = false;
  if (state_store_ == nullptr) return news;
  // Also re-saved every second: its age tells a restarted scheduler whether
  // the nodes can still be waiting for it.
  if (!changed && now - last_saved_ < std::chrono::seconds(1)) return news;
  pb::SchedulerState state;
  state.set_phase(static_cast<int32_t>(phase_));
  state.set_epoch(epoch_);
  for (const auto& node : members_.nodes()) {
    auto* n = state.add_nodes();
    *n->mutable_info() = node.info;
    n->set_routing_id(node.routing_id);
    n->set_dead(node.dead);
  }
  *state.mutable_view() = view_;
  for (const auto& [rank, report] : reports_) (*state.mutable_reports())[rank] = report;
  for (const auto& [rank, stats] : flushed_) (*state.mutable_flushed())[rank] = stats;
  state.set_restore_from(restore_from_);
  for (uint64_t steps : restore_steps_) state.add_restore_steps(steps);
  state.set_saved_unix_time(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  state.set_dropped_messages(dropped_messages_);
  if (work_) *state.mutable_work() = work_->ToState();
  state.set_workers_lost(workers_lost_);
  state.set_servers_wanted(scaling_.wanted());
  shard_map_.SaveMoves(state.mutable_moves());
  for (uint32_t id : draining_workers_) state.add_draining(id);
  for (uint32_t id : scaling_.draining()) state.add_draining(id);
  barriers_.Save(&state);
  state.set_checkpoint_version(checkpoints_.published_version());
  saved_checkpoint_version_ = checkpoints_.published_version();
  const absl::Status st = state_store_->Save(state);
  // The grants it records may go now. (Not when another scheduler leads:
  // the units are its to grant. When the store fails they go anyway, as
  // views do: the job runs on without a successor's safety net.)
  if (!absl::IsFailedPrecondition(st)) {
    for (Outgoing& grant : unsaved_sends_) outbox_.push_back(std::move(grant));
  }
  unsaved_sends_.clear();
  if (absl::IsFailedPrecondition(st)) {
    store_status_ = st;  // another scheduler leads: this one must stop (see scheduler.h)
  } else if (!st.ok()) {
    // Once per kind of failure, not every second.
    if (st.message() != store_error_) spdlog::error("{}", st.message());
    store_error_ = std::string(st.message());
  } else if (!store_error_.empty()) {
    spdlog::info("the scheduler's state is saved again in {}", state_store_->where());
    store_error_.clear();
  }
  last_saved_ = now;
  return news;
}

absl::Status JobCoordinator::PrepareRestore() {
  // (Not a config-file check: `scripts/sparta launch` fills in storage.path
  // after reading the config.)
  if (config_.storage.path.empty() && !config_.storage.checkpoint_every.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_.source, ": key 'storage.checkpoint_every' needs storage.path (where checkpoints go)"));
  }
  if (config_.storage.restore.empty()) return absl::OkStatus();
  auto candidates = RestoreCandidates(config_.storage.path, config_.storage.restore);
  if (!candidates.ok()) return candidates.status();
  // The newest checkpoint that reads back whole; a damaged one is skipped
  // with a warning that names what is wrong with it.
  std::optional<pb::CheckpointManifest> manifest;
  std::string chosen;
  std::vector<std::string> damaged;
  for (const std::string& dir : *candidates) {
    auto read = ReadManifest(dir);
    absl::Status st = read.ok() ? VerifyCheckpoint(dir, *read) : read.status();
    if (st.ok()) {
      manifest = *std::move(read);
      chosen = dir;
      break;
    }
    damaged.push_back(std::string(st.message()));
    spdlog::warn("checkpoint {} is damaged and will not be restored: {}", dir, st.message());
  }
  if (!manifest) {
    return absl::DataLossError(absl::StrCat("storage.restore=", config_.storage.restore, ": no intact checkpoint (",
                                            absl::StrJoin(damaged, "; "), ")"));
  }
  if (!damaged.empty()) {
    spdlog::warn("restoring the older checkpoint {} instead ({} newer ones are damaged)", chosen, damaged.size());
  }
  const std::string* dir = &chosen;
  if (manifest->shard_owner_size() != config_.cluster.num_shards) {
    return absl::FailedPreconditionError(absl::StrCat(*dir, " was saved with ", manifest->shard_owner_size(),
                                                      " shards; cluster.num_shards must be the same (it is ",
                                                      config_.cluster.num_shards, ")"));
  }
  if (config_.serving.cluster) {
    // Served, not trained on: where the workers were in the data does not matter.
    restore_from_ = std::filesystem::absolute(*dir).string();
    restore_version_ = manifest->version();
    if (config_.serving.follows_latest) {
      follower_ = std::make_unique<ServingFollower>(config_.storage.path, restore_version_,
                                                    config_.serving.poll_interval);
    }
    spdlog::info("serving checkpoint {} (version {}, {} rows saved by {} servers) on {} serving shards",
                 restore_from_, restore_version_, manifest->rows(), manifest->servers(), config_.cluster.servers);
    return absl::OkStatus();
  }
  const bool on_demand = config_.data.assignment_mode == Assignment::kOnDemand;
  if (manifest->has_work() != on_demand) {
    return absl::FailedPreconditionError(absl::StrCat(
        *dir, " was saved by a data.assignment: ", manifest->has_work() ? "on_demand" : "static",
        " job, which records its place in the data ", manifest->has_work() ? "as work units" : "as worker steps",
        "; data.assignment must be the same (it is ", config_.data.assignment, ")"));
  }
  if (on_demand) {
    // Any number of workers: they take what is left as units.
    restore_from_ = std::filesystem::absolute(*dir).string();
    restore_version_ = manifest->version();
    restore_work_ = manifest->work();
    uint64_t bytes = 0;
    for (const auto& r : manifest->work().remaining()) bytes += r.end() - r.begin();
    spdlog::info("resuming from checkpoint {} ({} rows saved by {} servers, now {} servers); {} ranges ({} bytes) "
                 "of input left, for {} workers (it was taken with {})",
                 restore_from_, manifest->rows(), manifest->servers(), config_.cluster.servers,
                 manifest->work().remaining_size(), bytes, config_.cluster.workers, manifest->workers());
    return absl::OkStatus();
  }
  if (manifest->workers() != config_.cluster.workers) {
    return absl::FailedPreconditionError(absl::StrCat(
        *dir, " was saved with ", manifest->workers(), " workers, whose places in the data it records; ",
        "cluster.workers must be the same (it is ", config_.cluster.workers, ")"));
  }
  restore_from_ = std::filesystem::absolute(*dir).string();
  restore_version_ = manifest->version();
  restore_steps_.assign(manifest->worker_steps().begin(), manifest->worker_steps().end());
  std::vector<uint64_t> clocks;  // per compute thread, as the workers count them
  for (uint64_t steps : restore_steps_) clocks.push_back(steps / config_.worker.threads);
  clocks_.Start(clocks);
  spdlog::info("resuming from checkpoint {} ({} rows saved by {} servers, now {} servers)", restore_from_,
               manifest->rows(), manifest->servers(), config_.cluster.servers);
  return absl::OkStatus();
}

}  // namespace sparta
