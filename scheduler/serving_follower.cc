#include "scheduler/serving_follower.h"

#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/checkpoint_files.h"

namespace sparta {

ServingFollower::ServingFollower(std::string storage_path, uint64_t restored, double poll_seconds)
    : storage_path_(std::move(storage_path)),
      poll_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(poll_seconds))),
      announced_(restored) {}

bool ServingFollower::Poll(Clock::time_point now) {
  if (staging_.has_value() || now - last_poll_ < poll_) return false;
  last_poll_ = now;
  bool newer = false;
  const std::vector<DeltaRef> deltas = ListDeltas(storage_path_);
  if (deltas.empty() && !warned_no_deltas_) {
    const std::vector<uint64_t> checkpoints = ListCheckpoints(storage_path_);
    if (!checkpoints.empty() && checkpoints.back() > announced_) {
      warned_no_deltas_ = true;
      spdlog::warn("the job took checkpoint {} but publishes no deltas: a serving cluster follows published "
                   "versions (serving.publish_every in the job's config), and goes on serving version {}",
                   checkpoints.back(), announced_);
    }
  }
  for (const DeltaRef& delta : deltas) {
    if (delta.base == announced_ && delta.version > announced_) {
      staging_ = delta;
      spdlog::info("staging model version {} on the servers ({})", delta.version, delta.dir);
      return true;
    }
    newer |= delta.version > announced_;
  }
  if (newer && broken_at_ != announced_) {
    broken_at_ = announced_;
    spdlog::warn("the job published versions after {}, but the delta that goes on from {} is gone (pruned at a "
                 "checkpoint before this serving cluster staged it): it goes on serving version {}; started "
                 "again, it loads the newest checkpoint",
                 announced_, announced_, announced_);
  }
  return false;
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
    h.mutable_checkpoint()->set_version(staging_->version);
    h.mutable_checkpoint()->set_base(staging_->base);
    h.mutable_checkpoint()->set_delta_dir(std::filesystem::absolute(staging_->dir).string());
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
