// CheckpointCoordinator: the scheduler's side of a checkpoint, one
// consistent cut across all shards of all servers at one version.
//
//   1. PAUSE to every worker. Each stops at its next step boundary once all
//      its pushes are acknowledged and answers PAUSED with its step count
//      (a worker that has finished training answers at once).
//   2. With every worker paused no update is in flight, so the servers'
//      state is one version: CHECKPOINT to every server. Each writes its
//      changed rows and makes a RocksDB checkpoint of its database into
//      <checkpoint>.tmp/server-<rank>, then answers CHECKPOINT_DONE.
//   3. The manifest (shard map, tables, worker steps) is written, the folder
//      renamed to its final name and LATEST updated; RESUME to the workers.
//
// With serving.publish_every every cut is also a published model version:
// the servers write the rows changed since the last published version
// (its base) as a delta (common/delta_files.h), and Publish() makes such a
// cut without a checkpoint. Versions are numbered in one sequence with the
// checkpoints. A checkpoint holds what the deltas before it held: once it
// is published, the deltas up to the checkpoint before it are deleted (a
// follower a little behind can still step through the newest ones), and
// when the deltas since the last checkpoint hold more rows than it did,
// the next publication is a checkpoint (Publish() says so).
//
// Not thread-safe: driven by the scheduler's single thread.
#ifndef SPARTA_SCHEDULER_CHECKPOINT_COORDINATOR_H_
#define SPARTA_SCHEDULER_CHECKPOINT_COORDINATOR_H_

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/config.h"
#include "sparta.pb.h"

namespace sparta {

class CheckpointCoordinator {
 public:
  // Published deltas a checkpoint leaves in place even when it holds them,
  // for serving clusters still following the chain (the newest ones).
  static constexpr size_t kDeltasKept = 16;

  struct Hooks {
    std::function<void(const pb::Header&, pb::Role)> broadcast;
    std::function<void(const std::string& reason)> fail;  // the job cannot go on
    std::function<int()> live_servers;                      // how many must cut
    // Ranks of the workers that must pause (all of them; with
    // data.assignment on_demand, the live ones). Null: every rank.
    std::function<std::vector<int>()> live_workers;
    // data.assignment on_demand: the input left at the cut, given how far
    // into each unit in flight its worker had trained. Null: static.
    using WorkLeft = std::function<pb::WorkProgress(const std::function<uint64_t(uint64_t unit)>& trained)>;
    WorkLeft work_left;
    std::function<std::vector<uint32_t>()> shard_owner;     // the current shard map
  };

  CheckpointCoordinator(const Config& config, Hooks hooks);

  // A serving cluster reads storage.path (its model) and never writes there.
  bool enabled() const { return !config_.storage.path.empty() && !config_.serving.cluster; }
  bool busy() const { return phase_ != Phase::kIdle; }
  // The servers are cutting: the shard map must hold still until the
  // manifest, which names each shard's owner, is written.
  bool cutting() const { return phase_ == Phase::kCutting; }

  // Starts a checkpoint (`why` is logged); `then` runs once it is published. While another one is
  // running, it is queued to start right after (several queued requests
  // collapse into one).
  void Start(const std::string& why, std::function<void()> then = nullptr);
  // serving.publish_every: publishes a model version (a cut without a
  // checkpoint), or, when the deltas since the last checkpoint have grown
  // past it, a checkpoint. Nothing if a cut is running (the next interval
  // will do).
  void Publish();
  // A new job (not one taken over) whose rows start as those of version
  // `restored` (0: a fresh job, no rows): its first delta goes on from it.
  // Deltas left by earlier jobs are deleted: they belong to another history.
  void BeginJob(uint64_t restored);
  // A worker left the job (on_demand): the pause no longer waits for it.
  void OnWorkerLost();

  // `progress`: on_demand, how far into each of its units the worker had
  // trained when it paused. `error`: the worker could not save its own
  // state (worker/worker.h): the checkpoint fails.
  void OnPaused(int worker_rank, const pb::CheckpointInfo& info,
                const pb::WorkerProgress& progress = pb::WorkerProgress(), const std::string& error = "");
  void OnServerDone(int server_rank, const pb::Header& h);

  // The cluster changed under a running checkpoint (a server died): drop it,
  // resume the workers, and start it again if something waits on it.
  void Abandon(const std::string& why);

  // This scheduler took over a running job whose newest published
  // checkpoint is `version` (0: none). Numbering goes on from it, or from a
  // newer one on disk (published after the old scheduler last saved its
  // state), so that no version is written twice.
  void TakeOver(uint64_t version);

  // The newest published version (0 if none yet).
  uint64_t last_version() const { return last_version_; }
  double last_seconds() const { return last_seconds_; }
  // The newest model version published as a delta (0: none).
  uint64_t published_model_version() const { return base_; }
  // The newest checkpoint this job published (0 if none), and its folder ("" if none).
  uint64_t published_version() const { return published_version_; }
  const std::string& published_dir() const { return published_dir_; }

 private:
  enum class Phase { kIdle, kPausing, kCutting };
  // The folder version `version` is published under.
  std::string DirOf(uint64_t version) const;
  // Starts a cut of the next version; `publish_only`: no checkpoint.
  void StartCut(const std::string& why, std::function<void()> then, bool publish_only);
  // Writes the delta's manifest and publishes it; false (after Failed()) if that failed.
  bool PublishDeltaOfCut();
  // Writes the checkpoint's manifest and publishes it; false (after Failed()) if that failed.
  bool PublishCheckpointOfCut();
  bool publishing() const { return config_.serving.publish_every_seconds > 0; }
  // What the running cut makes, for the log.
  const char* CutName() const { return publish_only_ ? "model version" : "checkpoint"; }
  void Finish();
  // Pausing: once every worker that must pause has, the servers cut.
  void CutIfAllPaused();
  // The running checkpoint failed: dropped and retried, unless that has
  // happened kMaxFailures times in a row (then the job fails).
  void Failed(const std::string& error);

  static constexpr int kMaxFailures = 3;

  const Config config_;
  const Hooks hooks_;
  Phase phase_ = Phase::kIdle;
  uint64_t version_ = 0;
  uint64_t last_version_ = 0;
  double last_seconds_ = 0;
  uint64_t published_version_ = 0;
  std::string published_dir_;
  int failures_ = 0;  // in a row
  std::string dir_;        // the checkpoint's .tmp folder (none when publish_only_)
  std::string delta_dir_;  // the delta's .tmp folder (serving.publish_every)
  bool publish_only_ = false;
  uint64_t base_ = 0;  // the newest published version a delta goes on from
  uint64_t delta_rows_since_checkpoint_ = 0;
  uint64_t checkpoint_rows_ = 0;  // rows of the newest checkpoint
  std::function<void()> then_;
  std::map<int, uint64_t> worker_steps_;         // by rank
  std::map<uint64_t, uint64_t> unit_bytes_;      // on_demand: unit -> bytes trained at the cut
  std::map<int, pb::CheckpointInfo> server_done_;  // by rank
  std::chrono::steady_clock::time_point started_;
  struct Queued {
    std::string why;
    std::function<void()> then;
  };
  Queued queued_;  // a request that came while busy
  bool has_queued_ = false;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_CHECKPOINT_COORDINATOR_H_
