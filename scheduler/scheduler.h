// Scheduler: the cluster's coordinator. It registers servers and workers,
// publishes the cluster view (nodes + shard map, with an epoch), answers
// heartbeats, runs named barriers, answers operators (sparta-ctl: status,
// checkpoint, stop), serves /metrics, detects silent nodes, coordinates
// checkpoints (storage.checkpoint_every, CHECKPOINT_REQUEST, SIGUSR1, and
// one at the end), resumes a job from one (storage.restore), and ends the
// job: all workers done -> final checkpoint -> servers flush -> every daemon
// is told to exit.
//
// One thread runs everything (Run()); it owns the ROUTER socket. The class is
// not thread-safe and needs no locks.
#ifndef SPARTA_SCHEDULER_SCHEDULER_H_
#define SPARTA_SCHEDULER_SCHEDULER_H_

#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "common/cluster_auth.h"
#include "common/config.h"
#include "common/daemon_metrics.h"
#include "scheduler/checkpoint_coordinator.h"
#include "scheduler/clock_table.h"
#include "scheduler/connection_watch.h"
#include "scheduler/membership.h"
#include "scheduler/shard_map.h"
#include "scheduler/state_store.h"
#include "sparta.pb.h"

namespace sparta {

class Scheduler {
 public:
  // `summary_file`: where the job summary JSON is written at the end ("" for none).
  // `info_file`: where to describe this node once bound ("" for none).
  Scheduler(const Config& config, std::string summary_file, std::string info_file);

  // Runs the job to its end. OK when every worker finished and every server
  // flushed; otherwise the reason the job failed (also broadcast as ABORT).
  absl::Status Run();

 private:
  enum class Phase { kRegistering, kRunning, kFlushing, kDone };

  // Run() without the summary: the job from start to end.
  absl::Status Serve();

  void Dispatch(const std::string& routing_id, const pb::Header& h, Membership::Clock::time_point now);
  void OnRegister(const std::string& routing_id, const pb::Header& h, Membership::Clock::time_point now);
  void OnBarrier(const Membership::Node& node, const std::string& name);
  void OnWorkerDone(const Membership::Node& node, const pb::WorkerReport& report);
  void OnFlushDone(const Membership::Node& node, const pb::ServerStats& stats);
  void PublishView();
  // A server went silent or died: with replication the cluster fails over
  // to the replicas (new view); without, the job fails.
  void OnServerLost(Membership::Node* node, const std::string& why);
  // Shards `lost` have no whole copy left after `node` died: the job fails,
  // saying which checkpoint it can roll back to, if any.
  void OnShardsLost(const Membership::Node& node, const std::string& why, const std::vector<uint32_t>& lost);
  void CheckTimers(Membership::Clock::time_point now);
  // A node's connection closed: if its port refuses connections too, its
  // process is gone and it is declared dead now, not a heartbeat timeout
  // later.
  void OnConnectionClosed(const std::string& routing_id, Membership::Clock::time_point now);
  void ProbeSuspects(Membership::Clock::time_point now);
  void Fail(const std::string& reason);
  void SendTo(const std::string& routing_id, pb::Header h);
  void Broadcast(const pb::Header& h, pb::Role only = pb::ROLE_UNKNOWN);
  pb::JobSummary BuildSummary() const;
  void WriteSummary() const;
  // storage.restore -> the checkpoint to resume from, checked against this job.
  absl::Status PrepareRestore();
  // A restarted scheduler: takes over the job saved in its state store, if
  // that job was still running when the state was last saved.
  absl::StatusOr<bool> TakeOverSavedJob();
  void SaveState(Membership::Clock::time_point now);
  void FinishTraining();
  // The job is over (successfully): every node is told to exit.
  void ShutDown(const std::string& why);
  // Operator requests (sparta-ctl), from any peer that reaches the socket.
  void OnStop(const std::string& routing_id);
  // SIGTERM here or at a node (`who`): a final checkpoint, then the end of
  // the job as "preempted", within cluster.shutdown_grace.
  void OnPreempt(const std::string& who, Membership::Clock::time_point now);
  void Reply(const std::string& routing_id, pb::MsgType type, const absl::Status& status);
  pb::ClusterStatus BuildStatus(Membership::Clock::time_point now) const;
  void PublishMetrics(Membership::Clock::time_point now);

  const Config config_;
  const std::string summary_file_;
  const std::string info_file_;
  zmq::context_t context_;
  std::unique_ptr<ZapAuthenticator> zap_;  // cluster.auth: curve
  zmq::socket_t socket_;
  ConnectionWatch watch_;  // nodes whose connection closed (a process gone)
  // Routing ids of nodes whose connection closed -> until when to probe.
  std::map<std::string, Membership::Clock::time_point> suspects_;
  Membership members_;
  Phase phase_ = Phase::kRegistering;
  Membership::Clock::time_point started_;
  Membership::Clock::time_point last_silence_check_;
  uint64_t epoch_ = 0;
  absl::Status outcome_;
  // (role, name) -> ids that have arrived.
  std::map<std::pair<int, std::string>, std::set<uint32_t>> barriers_;
  std::map<uint32_t, pb::WorkerReport> reports_;  // by worker rank
  ClockTable clocks_;  // worker.consistency: each worker's finished steps
  std::map<uint32_t, pb::ServerStats> flushed_;   // by server rank
  uint64_t dropped_messages_ = 0;
  ShardMap shard_map_;
  CheckpointCoordinator checkpoints_;
  Membership::Clock::time_point last_checkpoint_;
  std::unique_ptr<StateStore> state_store_;  // null without storage.path
  bool state_changed_ = false;  // members, phase or view changed: save and publish now
  Membership::Clock::time_point last_saved_;
  uint64_t incarnation_ = 0;  // tells nodes this scheduler process from an earlier one
  pb::ClusterView view_;      // the last view published
  std::set<uint32_t> unheard_;        // after a takeover: live nodes not heard from yet
  bool finish_after_resync_ = false;  // after a takeover: the job was ending
  std::string restore_from_;            // "" unless resuming
  std::vector<uint64_t> restore_steps_;  // by worker rank
  bool stopped_ = false;                 // ended by a STOP_REQUEST
  bool preempted_ = false;               // ended by SIGTERM
  // Set by SIGTERM: the job must have ended by then.
  std::optional<Membership::Clock::time_point> preempt_deadline_;
  // Shards that lost every copy (the job failed), for the summary.
  pb::JobSummary lost_;
  DaemonMetrics metrics_;                // last: its scrapes read snapshots only
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_SCHEDULER_H_
