// KVClient: a worker's asynchronous connection to every parameter server.
//
// Pull() and Push() split a request by the cluster's shard map into
// messages per server (one per about a MiB of values: a large request goes
// in parts, which the server applies while the next crosses; the keys go
// grouped by shard, the order in which the server walks them), send them
// (or hand them to the client's I/O thread) and return at once with a
// Ticket; Wait(ticket) blocks until every server has answered.
// So a trainer can issue the next batch's pull, compute this batch, and
// leave the previous batch's push in flight, all at the same time.
//
// Every request carries this node's id, a sequence number unique within this
// client, and the view epoch; servers use (sender, seq) to drop resent
// duplicates.
//
// Failover: each part of a request keeps its frames (shared with ZeroMQ, not
// copied) until its server answers. When a new cluster view arrives
// (UpdateView) the parts pending at a dead server are split by the new
// shard map and resent, under their original sequence numbers, to the new
// primaries; a part a server refuses with kAborted (it is at another epoch,
// or no longer leads the shard) is resent the same way a moment later. So a
// push acknowledged once is applied once, and one not yet acknowledged is
// never lost.
//
// Thread-safe: any thread may call any method. One DEALER socket per
// server; whoever holds `io_mu_` uses them (ZeroMQ sockets are not
// thread-safe): a caller that finds it free sends its request itself, and
// a caller in Wait() receives the replies itself, one thread hand-off fewer
// each way than going through the I/O thread. The I/O thread serves the
// sockets when no caller does (replies to requests nobody waits for yet,
// views, resends, deadlines); it waits for them on the sockets' ZMQ_FD
// without the lock. While callers serve (one did in the last few
// milliseconds), it stops watching the sockets and looks in once a
// millisecond, and only if the lock is free: watching them, it woke with
// every reply the caller was waiting for and then slept on the caller's
// lock, two wake-ups per request on the caller's path (perf of 4 KB
// requests: futex wakes in the caller). Every holder of the lock reads each socket until it has
// nothing left before letting go (ZMQ_FD signals only new arrivals). A
// Pull's `keys` and `out` must stay valid until its Wait returns; Push copies
// what it sends, so its inputs may be reused at once.
#ifndef SPARTA_WORKER_KV_CLIENT_H_
#define SPARTA_WORKER_KV_CLIENT_H_

#include <poll.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "common/config.h"
#include "common/mailbox.h"
#include "common/shard_view.h"
#include "common/traffic_counters.h"
#include "sparta.pb.h"

namespace sparta {

class KVClient {
 public:
  class Operation;
  using Ticket = std::shared_ptr<Operation>;

  KVClient(zmq::context_t* context, const Config& config, uint32_t node_id, const pb::ClusterView& view);
  ~KVClient();
  KVClient(const KVClient&) = delete;
  KVClient& operator=(const KVClient&) = delete;

  // Connects to every server and starts the I/O thread.
  absl::Status Start();

  // Creates `spec` on every server (idempotent) and waits for all of them.
  absl::Status CreateTable(const pb::TableSpec& spec);

  // Fetches `dim` floats per key into out[i * dim]. `clock`: the training
  // step the request belongs to (worker.consistency bsp), 0 for none.
  // `model_version`: a serving cluster's front-end reads that version (0:
  // the one the servers hold).
  Ticket Pull(uint32_t table, uint32_t dim, std::span<const uint64_t> keys, float* out, uint64_t clock = 0,
              uint64_t model_version = 0);

  // Sends gradients grads[i * dim] of keys[i] to be applied by the servers.
  // `counts` (empty, or one per key): keys[i]'s occurrences in the batch,
  // which servers count towards admitting a new key (embedding.admission).
  // `step`: the worker's step, which rows remember (embedding.eviction.ttl).
  Ticket Push(uint32_t table, uint32_t dim, std::span<const uint64_t> keys, std::span<const float> grads,
              uint64_t clock = 0, std::span<const uint32_t> counts = {}, uint64_t step = 0);

  // Blocks until the operation has completed on every server.
  absl::Status Wait(const Ticket& ticket);
  // As Wait, adding the time it blocked to *blocked_seconds (a trainer's
  // time waiting on the network).
  absl::Status Wait(const Ticket& ticket, double* blocked_seconds);
  // Whether it has completed (Wait would not block).
  static bool Done(const Ticket& ticket);

  // Fails every pending and future operation with `status` (e.g. when the
  // scheduler aborts the job), so no caller stays blocked.
  void Abort(const absl::Status& status);

  // Adopts a newer cluster view (any thread).
  void UpdateView(const pb::ClusterView& view);

  int num_servers() const { return static_cast<int>(servers_.size()); }

  // What this client has sent and received (any thread).
  const TrafficCounters& traffic() const { return traffic_; }
  // Request parts sent and not yet answered, over all servers (any thread).
  uint64_t pending_parts() const { return pending_parts_.load(std::memory_order_relaxed); }

 private:
  struct Outgoing;
  struct PendingPart;
  struct ServerLink;

  Ticket Send(pb::MsgType type, uint32_t table, uint32_t dim, std::span<const uint64_t> keys,
              std::span<const float> grads, float* out, uint64_t clock, std::span<const uint32_t> counts = {},
              uint64_t step = 0, uint64_t model_version = 0);
  // Sends one part from this thread when the sockets are free, else queues
  // it for whoever serves them next.
  void Deliver(Outgoing o);
  void Run();
  // After a poll whose first two fds are the outbox's and the views':
  // clears their wake-ups (ServeLocked() takes their items without). Needs
  // io_mu_, held until that ServeLocked().
  void ClearMailboxWakes(const std::vector<pollfd>& fds);
  // One round of the sockets' work: aborts, views, queued requests (then
  // `also`, if given), resends, deadlines, and last every reply that has
  // arrived (read once per round: each look at a socket is two system
  // calls inside libzmq). Needs io_mu_.
  void ServeLocked(Outgoing* also = nullptr);
  // Reads every reply waiting on the sockets. Needs io_mu_.
  void ReceiveAllLocked();
  // Waits for `ticket` while serving the sockets. Needs io_mu_.
  void ServeUntilDone(const Ticket& ticket);
  void OnResponse(int server, const pb::Header& h, std::vector<zmq::message_t>& frames);
  void SendPart(int server, uint64_t seq, pb::Header header, std::vector<zmq::message_t> frames, PendingPart part);
  // Splits a part by the current shard map and sends the pieces again.
  void Reroute(PendingPart part);
  void AdoptView(const pb::ClusterView& view);
  void ConnectLink(ServerLink& link);
  void FailAll(const absl::Status& status);
  void CheckDeadlines();

  zmq::context_t* const context_;
  const Config config_;
  const uint32_t node_id_;
  // The view; read by Send() on caller threads, replaced by the I/O thread.
  std::shared_ptr<const ShardView> view() const {
    std::lock_guard<std::mutex> lock(view_mu_);
    return shards_;
  }
  mutable std::mutex view_mu_;
  std::shared_ptr<const ShardView> shards_;  // guarded by view_mu_
  // Guards the sockets and everything below up to servers_.
  std::mutex io_mu_;
  uint64_t next_seq_ = 1;
  std::deque<std::pair<std::chrono::steady_clock::time_point, PendingPart>> retries_;
  std::chrono::steady_clock::time_point next_deadline_check_;
  std::vector<std::unique_ptr<ServerLink>> servers_;
  Mailbox<pb::ClusterView> views_;
  Mailbox<Outgoing> outbox_;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  std::mutex abort_mu_;
  absl::Status abort_status_;  // guarded by abort_mu_
  std::atomic<bool> aborted_{false};
  TrafficCounters traffic_;
  std::atomic<uint64_t> pending_parts_{0};
  // When a caller last took io_mu_ to send or wait (steady-clock ns).
  std::atomic<int64_t> caller_served_at_{0};
  void NoteCallerServes();
  bool CallersServe() const;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_KV_CLIENT_H_
