// JobCoordinator: what the scheduler's messages mean. It registers servers
// and workers, publishes the cluster view (nodes + shard map, with an
// epoch), answers heartbeats, runs named barriers, answers operators
// (sparta-ctl: status, checkpoint, stop), detects silent nodes, coordinates
// checkpoints (storage.checkpoint_every, CHECKPOINT_REQUEST, SIGUSR1, and
// one at the end), resumes a job from one (storage.restore), and ends the
// job: all workers done -> final checkpoint -> servers flush -> every daemon
// is told to exit.
//
// It owns no socket: a message comes in through Dispatch() as a decoded
// header and the routing id of its sender, and what to send in answer
// collects in an outbox that the event loop (scheduler/scheduler.h) drains
// with TakeOutbox() and sends. So the whole job's logic runs, and is
// unit-tested, without ZeroMQ. (The one thing it does on the network itself
// is probe a closed connection's port, see OnConnectionClosed().)
//
// Not thread-safe: the scheduler's one thread calls everything.
#ifndef SPARTA_SCHEDULER_JOB_COORDINATOR_H_
#define SPARTA_SCHEDULER_JOB_COORDINATOR_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/config.h"
#include "scheduler/barrier_table.h"
#include "scheduler/checkpoint_coordinator.h"
#include "scheduler/clock_table.h"
#include "scheduler/membership.h"
#include "scheduler/server_scaling.h"
#include "scheduler/serving_follower.h"
#include "scheduler/shard_balancer.h"
#include "scheduler/shard_map.h"
#include "scheduler/state_store.h"
#include "scheduler/work_dispatcher.h"
#include "sparta.pb.h"

namespace sparta {

class JobCoordinator {
 public:
  using Clock = Membership::Clock;

  // A message to send: to the peer with this routing id.
  struct Outgoing {
    std::string routing_id;
    pb::Header header;
  };

  // What the process was asked by signal since the last CheckTimers().
  struct Signals {
    bool checkpoint = false;  // SIGUSR1: a checkpoint now
    bool terminate = false;   // SIGTERM: a final checkpoint, then the end
  };

  explicit JobCoordinator(const Config& config);

  // Before the first message: takes over a job saved in the state store
  // (a restarted scheduler) or prepares storage.restore. `metrics_port` is
  // what the status reports as the scheduler's.
  absl::Status Start(Clock::time_point now, uint32_t metrics_port);

  // One message from the peer `routing_id`.
  void Dispatch(const std::string& routing_id, const pb::Header& h, Clock::time_point now);
  // A message that could not be decoded: counted.
  void CountDropped() { ++dropped_messages_; }
  // A node's connection closed: if its port refuses connections too, its
  // process is gone and it is declared dead now, not a heartbeat timeout
  // later. Suspects are probed again at every ProbeSuspects().
  void OnConnectionClosed(const std::string& routing_id, Clock::time_point now);
  void ProbeSuspects(Clock::time_point now);
  bool has_suspects() const { return !suspects_.empty(); }
  // Start-up timeout, preemption deadline, periodic checkpoints and silent
  // nodes. `signals` are consumed (reset) when acted on.
  void CheckTimers(Clock::time_point now, Signals* signals);
  // Saves the job's state when it changed (or every second, so that its age
  // tells a restarted scheduler whether the nodes can still be waiting).
  // True if something changed since the last call: members, phase or view.
  bool SaveState(Clock::time_point now);
  // Where SaveState keeps the state; before Start(). Default: a
  // LocalStateStore in <storage.path>/scheduler (none without storage.path).
  void UseStateStore(std::unique_ptr<StateStore> store) { state_store_ = std::move(store); }
  // FailedPrecondition once the store refused a write because another
  // scheduler leads (cluster.coordination: etcd): this one must stop at
  // once, saying nothing more to the nodes.
  const absl::Status& store_status() const { return store_status_; }

  // What to send, in order; empties the outbox.
  std::vector<Outgoing> TakeOutbox();

  bool done() const { return phase_ == Phase::kDone; }
  // OK while running and after a successful end; else why the job failed.
  const absl::Status& outcome() const { return outcome_; }
  // A failure before the job ran (bad port, damaged checkpoint).
  void SetOutcome(absl::Status st) { if (outcome_.ok()) outcome_ = std::move(st); }
  bool IsMember(const std::string& routing_id) const { return members_.Has(routing_id); }
  // The socket identities of the nodes not declared dead.
  std::vector<std::string> LiveRoutingIds() const;

  // The job's reports (job_coordinator_reports.cc): its status now, for
  // sparta-ctl status and /metrics (ClusterMetrics), and its summary.
  pb::ClusterStatus BuildStatus(Clock::time_point now) const;
  pb::JobSummary BuildSummary() const;

 private:
  enum class Phase { kRegistering, kRunning, kFlushing, kDone };

  void OnRegister(const std::string& routing_id, const pb::Header& h, Clock::time_point now);
  // A serving cluster's front-end (sparta-serve, serving.shards > 0): it
  // gets an id, the current view (with the version the servers restored)
  // and every view after; the cluster neither waits for nor fails with it.
  void OnFrontEndRegister(const std::string& routing_id, const pb::NodeInfo& node, Clock::time_point now);
  void OnFrontEndLost(Membership::Node* node, const std::string& why);
  // `h`: the node's BARRIER (its name; resent and seq, see sparta.proto).
  void OnBarrier(const Membership::Node& node, const pb::Header& h);
  void OnWorkerDone(Membership::Node& node, const pb::WorkerReport& report);
  // A worker went silent or died: with data.assignment on_demand its units
  // go back to the pool and the job goes on (the launcher may start a
  // fresh worker under its rank); else the job fails.
  void OnWorkerLost(Membership::Node* node, const std::string& why);
  // A worker registered while the job runs (on_demand): it gets the view,
  // starting at the slowest live worker's clock.
  void OnWorkerJoined(const pb::NodeInfo& node, const std::string& routing_id);
  // Training is over when every live worker has reported (and, on_demand,
  // every unit is done).
  void FinishIfAllReported();
  // Releases barrier `name` of `role` (to its live nodes) if every live
  // node it waits for has arrived.
  void ReleaseIfComplete(pb::Role role, const std::string& name);
  // Workers a worker barrier waits for: all of them, or (on_demand) the live ones.
  int BarrierSize(pb::Role role) const;
  // The live worker of lowest rank (-1: none).
  int LeadWorker() const;
  void SendWork();
  void OnFlushDone(const Membership::Node& node, const pb::ServerStats& stats);
  void PublishView();
  // Sends the current view again to a server that reports an older one.
  void ResendViewIfBehind(Membership::Node* node, Clock::time_point now);
  // A server went silent or died: with replication the cluster fails over
  // to the replicas (new view); without, the job fails.
  void OnServerLost(Membership::Node* node, const std::string& why);
  // Shards `lost` have no whole copy left after `node` died: the job fails,
  // saying which checkpoint it can roll back to, if any.
  void OnShardsLost(const Membership::Node& node, const std::string& why, const std::vector<uint32_t>& lost);
  void Fail(const std::string& reason);
  // `h` stamped as this scheduler's, for `routing_id`.
  Outgoing Addressed(const std::string& routing_id, pb::Header h) const;
  void SendTo(const std::string& routing_id, pb::Header h);
  // SendTo(), once the state that records what `h` tells is saved (with a
  // state store: see unsaved_sends_); at once without one.
  void SendOnceSaved(const std::string& routing_id, pb::Header h);
  void Broadcast(const pb::Header& h, pb::Role only = pb::ROLE_UNKNOWN);
  // A serving cluster following its job (follower_): what a server's
  // report of its staged versions, or a poll, brings about; the fields of
  // the version news that heartbeat echoes repeat to `node`.
  void OnVersionStaged(const Membership::Node& node, uint64_t version, const pb::Header* failure);
  void PollVersions(Clock::time_point now);
  void AddVersionNews(const Membership::Node& node, pb::Header* echo) const;
  // storage.restore -> the checkpoint to resume from, checked against this job.
  absl::Status PrepareRestore();
  // A restarted scheduler: takes over the job saved in its state store, if
  // that job was still running when the state was last saved.
  absl::StatusOr<bool> TakeOverSavedJob();
  void FinishTraining();
  // The job is over (successfully): every node is told to exit.
  void ShutDown(const std::string& why);
  // Operator requests (sparta-ctl), from any peer that reaches the socket.
  void OnStop(const std::string& routing_id);
  // sparta-ctl drain: `who` (a worker's role and rank) is to leave the job.
  void OnDrain(const std::string& routing_id, const pb::NodeInfo& who);
  // A drained worker has reported: it leaves (not a loss) and is told to exit.
  void OnWorkerLeft(Membership::Node* node);
  // sparta-ctl drain server-N: every shard copy it holds moves to the other
  // servers (ShardMap::BeginDrain); once none is left it is let go.
  void DrainServer(const std::string& routing_id, const pb::NodeInfo& who);
  // sparta-ctl scale --servers N: more servers are awaited (started with
  // --join, each gets shards until rows balance), or the highest-ranked
  // ones are drained.
  void OnScale(const std::string& routing_id, uint32_t wanted);
  // After a server's report: moves whose target is whole advance (a
  // replica copy goes, a primary hands off, a handed-off shard switches;
  // not while a checkpoint cuts: its manifest names the owners it saw), and
  // drained servers that hold nothing leave.
  void AdvanceMoves();
  // What follows a worker's loss or leaving: clocks, a pausing checkpoint,
  // barriers and the end of training stop waiting for it.
  void AfterWorkerGone(const Membership::Node& node);
  // Workers that wait for work with none to give stop holding the others'
  // clocks back (ssp with on_demand).
  void CountOutIdleWorkers();
  // Worker `rank` no longer holds the others back; they hear the new
  // minimum clock if it rose.
  void CountOutOfClocks(int rank);
  // SIGTERM here or at a node (`who`): a final checkpoint, then the end of
  // the job as "preempted", within cluster.shutdown_grace.
  void OnPreempt(const std::string& who, Clock::time_point now);
  void Reply(const std::string& routing_id, pb::MsgType type, const absl::Status& status);

  const Config config_;
  std::vector<Outgoing> outbox_;
  uint32_t metrics_port_ = 0;
  // Routing ids of nodes whose connection closed -> until when to probe.
  std::map<std::string, Clock::time_point> suspects_;
  Membership members_;
  Phase phase_ = Phase::kRegistering;
  Clock::time_point started_;
  Clock::time_point last_silence_check_;
  uint64_t epoch_ = 0;
  absl::Status outcome_;
  BarrierTable barriers_;  // named barriers: who waits, and each one's last release
  // With a state store: WORK_GRANTs of a unit (on_demand) and
  // BARRIER_RELEASEs wait here until the state that records them is saved
  // (SaveState, once per turn of the event loop for all of them), so that a
  // scheduler taking over never grants again a unit some worker already
  // trains, and knows every release a node may have passed.
  std::vector<Outgoing> unsaved_sends_;
  // on_demand: node id -> the seq of the worker's latest WORK_REQUEST, which
  // its WORK_GRANT names (see SchedulerClient::RequestWork).
  std::map<uint32_t, uint64_t> work_requests_;
  std::map<uint32_t, pb::WorkerReport> reports_;  // by worker rank
  ClockTable clocks_;  // worker.consistency: each worker's finished steps
  std::optional<WorkDispatcher> work_;  // data.assignment on_demand
  Clock::time_point last_follow_look_{};  // data.follow: when data.train was last listed
  uint32_t workers_lost_ = 0;
  // data.assignment on_demand with ssp: workers idle for want of work, by
  // node id, with the clock they had when counted out (SendWork).
  std::map<uint32_t, uint64_t> idle_clocks_;
  std::set<uint32_t> draining_workers_;  // node ids (the servers': scaling_)
  double lost_examples_ = 0;  // trained by workers lost since, as of their last heartbeat
  std::map<uint32_t, pb::ServerStats> flushed_;   // by server rank
  uint64_t dropped_messages_ = 0;
  ShardMap shard_map_;
  ServerScaling scaling_;  // servers draining and wanted; moves between servers
  CheckpointCoordinator checkpoints_;
  Clock::time_point last_checkpoint_;
  Clock::time_point last_publish_;  // serving.publish_every
  std::unique_ptr<StateStore> state_store_;  // null without storage.path (and etcd)
  absl::Status store_status_;
  bool state_changed_ = false;  // members, phase or view changed since SaveState()
  // Saved already (a view is saved before it is sent), but SaveState() has
  // not yet told the loop: /metrics shows it at once.
  bool unreported_change_ = false;
  Clock::time_point last_saved_;
  uint64_t saved_checkpoint_version_ = 0;  // in the state last saved
  std::string store_error_;  // why the last save failed ("" if it did not)
  uint64_t incarnation_ = 0;  // tells nodes this scheduler process from an earlier one
  pb::ClusterView view_;      // the last view published
  std::set<uint32_t> unheard_;        // after a takeover: live nodes not heard from yet
  bool finish_after_resync_ = false;  // after a takeover: the job was ending
  std::string restore_from_;            // "" unless resuming
  uint64_t restore_version_ = 0;        // its version (0: a fresh job)
  // A serving cluster with serving.model: latest: follows the job's versions.
  std::unique_ptr<ServingFollower> follower_;
  std::vector<uint64_t> restore_steps_;  // by worker rank
  std::optional<pb::WorkProgress> restore_work_;  // on_demand: the input left at the restored cut
  // When training began (the first view) and when the job ended: what a
  // worker without a final report (a job stopped or failed before it
  // finished) trained for, in the summary.
  std::optional<Clock::time_point> running_since_, ended_at_;
  bool stopped_ = false;                 // ended by a STOP_REQUEST
  bool preempted_ = false;               // ended by SIGTERM
  // Set by SIGTERM: the job must have ended by then.
  std::optional<Clock::time_point> preempt_deadline_;
  // Shards that lost every copy (the job failed), for the summary.
  pb::JobSummary lost_;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_JOB_COORDINATOR_H_
