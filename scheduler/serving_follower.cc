#include "scheduler/serving_follower.h"

#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/checkpoint_files.h"
#include "common/version_plan.h"

namespace sparta {

ServingFollower::ServingFollower(std::string storage_path, uint64_t restored, double poll_seconds)
    : storage_path_(std::move(storage_path)),
      poll_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(poll_seconds))),
      announced_(restored) {}

bool ServingFollower::Poll(Clock::time_point now) {
  if (staging_.has_value() || now - last_poll_ < poll_) return false;
  last_poll_ = now;
  const std::vector<uint64_t> checkpoints = ListCheckpoints(storage_path_);
  const std::vector<DeltaRef> deltas = ListDeltas(storage_path_);
  const VersionPlan plan = PlanVersions(announced_, checkpoints, deltas);
  if (plan.start == VersionPlan::Start::kNothing) return false;
  if (plan.start == VersionPlan::Start::kCurrent) {
    const DeltaRef& next = plan.deltas.front();
    staging_ = Step{next.version, next.base, next.dir, false};
    spdlog::info("staging model version {} on the servers ({})", next.version, next.dir);
    return true;
  }
  // No delta goes on from what is served. The plan's checkpoint, or where
  // that is older than what is served (a job restored from an older
  // checkpoint went on from it), the newest checkpoint.
  uint64_t checkpoint = plan.start == VersionPlan::Start::kCheckpoint ? plan.checkpoint : 0;
  if (checkpoint <= announced_ && !checkpoints.empty()) checkpoint = checkpoints.back();
  if (checkpoint <= announced_) {
    if (stuck_at_ != announced_) {
      stuck_at_ = announced_;
      spdlog::warn("the job reached model version {}, but no delta goes on from version {} and no checkpoint is "
                   "newer: this cluster goes on serving version {}",
                   plan.target, announced_, announced_);
    }
    return false;
  }
  staging_ = Step{checkpoint, announced_, CheckpointsDir(storage_path_) + "/" + CheckpointName(checkpoint), true};
  if (!warned_checkpoint_) {
    warned_checkpoint_ = true;
    spdlog::warn("no published delta goes on from model version {} ({}): staging checkpoint {} whole, every row of "
                 "each server's shards held beside those it serves until the fold; a job that publishes deltas "
                 "(serving.publish_every) and a cluster within a checkpoint interval of it need only the rows "
                 "that changed",
                 announced_,
                 deltas.empty() ? "the job publishes none" : "the chain was pruned at a checkpoint before this "
                                                             "cluster staged it",
                 checkpoint);
  } else {
    spdlog::info("staging checkpoint {} whole on the servers: no published delta goes on from model version {}",
                 checkpoint, announced_);
  }
  return true;
}

void ServingFollower::OnStaged(uint32_t node, uint64_t version) {
  uint64_t& staged = staged_[node];
  staged = std::max(staged, version);
}

void ServingFollower::Exclude(uint32_t node) {
  if (excluded_.insert(node).second) {
    spdlog::warn("server (node {}) joined the serving cluster after it started following its job: it serves shard "
                 "copies as a replica but stages no versions (started again, the cluster loads the newest "
                 "checkpoint on every server)",
                 node);
  }
}

void ServingFollower::OnFailed(uint32_t node, uint64_t version, const std::string& error) {
  if (excluded_.contains(node) || !staging_.has_value() || staging_->version != version) return;
  spdlog::warn("server {} could not stage model version {}: {}; looking again at the next poll", node, version,
               error);
  staging_.reset();
}

bool ServingFollower::MaybeAnnounce(const std::vector<uint32_t>& live) {
  if (!staging_.has_value() || live.empty()) return false;
  bool any = false;
  for (uint32_t node : live) {
    if (excluded_.contains(node)) continue;
    any = true;
    auto it = staged_.find(node);
    if (it == staged_.end() || it->second < staging_->version) return false;
  }
  if (!any) return false;
  announced_ = staging_->version;
  staging_.reset();
  spdlog::info("model version {} is staged on every server: announced", announced_);
  return true;
}

pb::Header ServingFollower::StageMessage() const {
  pb::Header h;
  h.set_type(pb::STAGE_VERSION);
  if (staging_.has_value()) {
    pb::CheckpointInfo* step = h.mutable_checkpoint();
    step->set_version(staging_->version);
    step->set_base(staging_->base);
    const std::string dir = std::filesystem::absolute(staging_->dir).string();
    if (staging_->checkpoint) {
      step->set_dir(dir);
    } else {
      step->set_delta_dir(dir);
    }
  }
  return h;
}

pb::Header ServingFollower::AnnounceMessage() const {
  pb::Header h;
  h.set_type(pb::MODEL_VERSION);
  h.set_model_version(announced_);
  return h;
}

}  // namespace sparta
