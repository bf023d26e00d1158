// ServingFollower: a serving cluster's scheduler following the training
// job it serves (serving.model: latest). Every serving.poll_interval it
// looks in the job's storage.path for the way to the newest version it can
// reach (common/version_plan.h) and asks every server to stage its next
// step (STAGE_VERSION: each reads its shards' rows beside what it serves,
// server/version_stager.h). Once every live server has staged it, the
// version is announced (MODEL_VERSION): front-ends pull at it from then
// on, and servers fold the version before into their rows. So a request is
// answered wholly by one version, whichever server answers.
//
// A step is the published delta that goes on from the version announced
// (serving.publish_every in the job's config), which holds one interval's
// changed rows. Where none does, a newer checkpoint is staged whole: the
// job prunes a delta once a checkpoint after it has been taken again
// (scheduler/checkpoint_coordinator.h), so a cluster more than a checkpoint
// interval behind finds its chain broken, and a job that publishes no
// deltas has only checkpoints. A checkpoint's step costs every row of a
// server's shards (read and held beside what it serves until the fold),
// which is what deltas avoid, so the first such step says so in the log.
//
// Decisions only, no sockets: the scheduler sends what it says.
// Not thread-safe: the scheduler's thread owns it.
#ifndef SPARTA_SCHEDULER_SERVING_FOLLOWER_H_
#define SPARTA_SCHEDULER_SERVING_FOLLOWER_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "sparta.pb.h"

namespace sparta {

class ServingFollower {
 public:
  using Clock = std::chrono::steady_clock;

  // `restored`: the checkpoint version the servers restored.
  ServingFollower(std::string storage_path, uint64_t restored, double poll_seconds);

  // A version being staged: a delta (going on from `base`), or a
  // checkpoint, which replaces every row.
  struct Step {
    uint64_t version = 0;
    uint64_t base = 0;  // a delta's
    std::string dir;    // the delta's or the checkpoint's folder
    bool checkpoint = false;
  };

  uint64_t announced() const { return announced_; }
  // The version the servers are asked to stage, if any.
  const std::optional<Step>& staging() const { return staging_; }

  // Looks for the next step when a look is due and none is being staged.
  // True if one is to be staged now (send StageMessage() to every server).
  bool Poll(Clock::time_point now);

  // Server `node` registered after the cluster started (a replacement for
  // a dead one): it holds shard copies streamed from their primaries but
  // none of the versions staged before it came, so it is never asked to
  // stage nor waited for. It serves as a replica; should it lead a shard
  // after another failure, pulls at the announced version are refused
  // there (OutOfRange), never answered from the wrong version.
  void Exclude(uint32_t node);
  bool excluded(uint32_t node) const { return excluded_.contains(node); }

  // Server `node` (its id) has staged up to `version`.
  void OnStaged(uint32_t node, uint64_t version);
  // Server `node` could not stage `version`: the step is given up, and
  // looked for again at the next poll (it may be gone: pruned).
  void OnFailed(uint32_t node, uint64_t version, const std::string& error);

  // Announces the version being staged once every server of `live` (node
  // ids) has staged it. True if it did (send AnnounceMessage() to servers
  // and front-ends).
  bool MaybeAnnounce(const std::vector<uint32_t>& live);

  // STAGE_VERSION for staging(); MODEL_VERSION for announced().
  pb::Header StageMessage() const;
  pb::Header AnnounceMessage() const;
  // Whether a server that reported `staged` should be asked again.
  bool Behind(uint64_t staged) const { return staging_.has_value() && staged < staging_->version; }

 private:
  const std::string storage_path_;
  const Clock::duration poll_;
  Clock::time_point last_poll_{};
  uint64_t announced_;
  std::optional<Step> staging_;
  absl::flat_hash_map<uint32_t, uint64_t> staged_;  // by server node id
  absl::flat_hash_set<uint32_t> excluded_;          // see Exclude()
  uint64_t stuck_at_ = 0;  // the announced version from which nothing newer was reachable (warned once)
  bool warned_checkpoint_ = false;  // a checkpoint was staged whole (said once)
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_SERVING_FOLLOWER_H_
