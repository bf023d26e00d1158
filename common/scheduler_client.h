// SchedulerClient: a server's or worker's control connection to the
// scheduler: registration, the cluster view, heartbeats, barriers and the end
// of the job.
//
// It owns one DEALER socket and one thread. The thread sends a heartbeat every
// cluster.heartbeat_interval. When nothing has come back for
// cluster.heartbeat_timeout it warns, and it gives up after
// cluster.scheduler_grace (cluster.startup_timeout before registration), so
// a node never hangs on a dead scheduler but survives a restarted one.
//
// Scheduler restarts: the socket has a stable routing id, so a restarted
// scheduler that reloaded its state knows this node again. Each heartbeat
// echo carries the scheduler's incarnation; when it changes, the client
// resends what the new scheduler may have missed: an unanswered
// registration, barriers still waited on, a work request still waited on,
// WORK_DONE, WORKER_DONE and FLUSH_DONE. A WORK_DONE is kept only until a
// unit granted for a later request arrives: the scheduler sends a unit only
// once its saved state records everything it heard before the request, so
// the resent list stays as short as the units done since the last grant
// however long the job runs (a followed stream's never ends).
//
// Thread-safe: every public method may be called from any thread. Callbacks
// run on the client's own thread and must not block.
#ifndef SPARTA_COMMON_SCHEDULER_CLIENT_H_
#define SPARTA_COMMON_SCHEDULER_CLIENT_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/mailbox.h"
#include "sparta.pb.h"

namespace sparta {

class SchedulerClient {
 public:
  struct Callbacks {
    std::function<void()> on_flush;                  // servers: persist, then SendFlushDone
    std::function<void(const absl::Status&)> on_end; // SHUTDOWN (ok) or ABORT / lost scheduler
    // PAUSE, RESUME, CHECKPOINT, CLOCK, every CLUSTER_VIEW after the first,
    // a WORK_GRANT with a clock to count from (before AwaitWork returns it),
    // and a serving cluster's STAGE_VERSION, MODEL_VERSION and heartbeat
    // echoes that carry either's fields.
    std::function<void(const pb::Header&)> on_control;
    // Adds this node's figures to each outgoing heartbeat (servers).
    std::function<void(pb::Header*)> on_heartbeat;
  };

  // `self` describes this node (role, host, ports, requested rank or -1).
  SchedulerClient(zmq::context_t* context, const Config& config, pb::NodeInfo self,
                  Callbacks callbacks);
  ~SchedulerClient();
  SchedulerClient(const SchedulerClient&) = delete;
  SchedulerClient& operator=(const SchedulerClient&) = delete;

  // Connects and registers. Returns once the scheduler has answered with this
  // node's id and rank.
  absl::Status Register();

  // Blocks until the first cluster view arrives (or the job ends).
  absl::StatusOr<pb::ClusterView> WaitForView();
  // The newest cluster view (valid after WaitForView()).
  pb::ClusterView view() const;

  // Blocks until every participant of barrier `name` has arrived.
  absl::Status Barrier(const std::string& name);
  // The live worker of lowest rank, as the last worker barrier's release
  // named it (it evaluates the model); 0 before any.
  int lead_rank() const;

  // data.assignment on_demand (workers): asks for the next work unit,
  // naming the units this worker still holds; then AwaitWork() blocks until
  // the scheduler grants one, or says every unit is done (nullopt), or the
  // job ends (an error). Two calls, so that a caller can post the request
  // in order with its WORK_DONEs and wait outside its own lock.
  void RequestWork(const std::vector<uint64_t>& held);
  absl::StatusOr<std::optional<pb::WorkRange>> AwaitWork();
  // Every line of unit `id` is trained and its pushes acknowledged.
  void SendWorkDone(uint64_t id);
  // The scheduler said this worker is drained (sparta-ctl drain): it gets
  // no more units, and leaves once it has reported.
  bool drained() const;

  // Blocks until the job ends: OK on SHUTDOWN, the reason otherwise.
  absl::Status WaitForEnd();

  // Fire-and-forget messages to the scheduler.
  void SendWorkerDone(const pb::WorkerReport& report);
  void SendFlushDone(const pb::ServerStats& stats);
  // Any other message (sender is filled in).
  void Send(pb::Header h) { Post(std::move(h)); }
  // Tells the scheduler this node cannot go on, so the job fails at once
  // with `error` instead of after a heartbeat timeout.
  void SendFailed(const absl::Status& error);

  // This node as registered (id and rank valid after Register()).
  pb::NodeInfo self() const;

  // Whether the scheduler has answered within `within` (any thread).
  bool HeardWithin(std::chrono::steady_clock::duration within) const;

  // WORK_DONEs kept to be resent to a scheduler that takes over (tests).
  size_t unsaved_work_done() const;

  // The job's end status if it has ended.
  bool ended() const { return ended_.load(std::memory_order_acquire); }

 private:
  void Run();
  void Handle(const pb::Header& h);
  void End(absl::Status status);
  void Post(pb::Header h);
  // Waits on cv_ until `ready()` holds or the job has ended.
  template <class Pred>
  absl::Status WaitUntil(std::unique_lock<std::mutex>& lock, Pred ready);

  zmq::context_t* const context_;
  const Config config_;
  const Callbacks callbacks_;
  Mailbox<pb::Header> outbox_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ended_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  pb::NodeInfo self_;  // guarded by mu_
  bool registered_ = false;
  bool have_view_ = false;
  pb::ClusterView view_;
  std::multiset<std::string> released_;  // barrier releases not yet consumed
  absl::Status end_status_;              // valid when ended_
  // What a restarted scheduler must hear again (see the class comment).
  std::multiset<std::string> waiting_barriers_;
  // Per barrier: the round of the last release taken (the scheduler numbers
  // them), so that a release sent twice is taken once.
  std::map<std::string, uint64_t> barrier_rounds_;
  std::vector<pb::Header> sticky_;        // WORKER_DONE, FLUSH_DONE
  // WORK_DONEs the scheduler's saved state may not hold yet, oldest first,
  // and how many of them were sent before the open WORK_REQUEST.
  std::deque<pb::Header> unsaved_work_done_;
  size_t work_done_before_request_ = 0;
  bool waiting_work_ = false;             // a WORK_REQUEST is unanswered
  pb::Header work_request_;               // it, to resend
  // Numbers this worker's requests (WORK_REQUEST.seq); a WORK_GRANT names
  // the one it answers. A request resent to a scheduler that took over is
  // answered twice, once maybe after the worker has asked again: that answer
  // is not the new request's.
  uint64_t work_requests_ = 0;
  // The answer to it: a unit, or nullopt when every unit is done.
  std::optional<std::optional<pb::WorkRange>> grant_;
  int lead_rank_ = 0;
  bool drained_ = false;
  pb::Header registration_;
  uint64_t incarnation_ = 0;  // client thread only
  // steady_clock time of the last message from the scheduler (0: none yet).
  std::atomic<int64_t> last_contact_ns_{0};
};

}  // namespace sparta

#endif  // SPARTA_COMMON_SCHEDULER_CLIENT_H_
