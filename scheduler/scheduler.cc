#include "scheduler/scheduler.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <set>

#include "common/daemon_options.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/printable.h"
#include "common/proto_json.h"
#include "common/socket_util.h"
#include "common/status_macros.h"
#include "common/termination.h"
#include "scheduler/cluster_metrics.h"
#include "scheduler/etcd_state_store.h"

namespace sparta {
namespace {
// SIGUSR1 asks for a checkpoint now (scripts/sparta checkpoint RUN sends it).
std::atomic<bool> checkpoint_signal{false};
void OnCheckpointSignal(int) { checkpoint_signal.store(true); }
}  // namespace

using Clock = JobCoordinator::Clock;

Scheduler::Scheduler(const Config& config, std::string summary_file, std::string info_file, int rank)
    : config_(config),
      summary_file_(std::move(summary_file)),
      info_file_(std::move(info_file)),
      rank_(rank),
      address_(config.cluster.schedulers.empty() ? config.cluster.scheduler
                                                 : config.cluster.schedulers[std::clamp<size_t>(
                                                       std::max(rank, 0), 0, config.cluster.schedulers.size() - 1)]),
      job_(config),
      context_(1),
      socket_(context_, zmq::socket_type::router),
      watch_(&context_, &socket_) {}

absl::Status Scheduler::Run() {
  if (config_.cluster.schedulers.size() > 1 && rank_ < 0) {
    // Which address is this one's? Guessing would win an election and then
    // fail to listen.
    return absl::InvalidArgumentError(absl::StrCat(
        "cluster.scheduler lists ", config_.cluster.schedulers.size(),
        " schedulers: start each with --rank I, I being its address's place in the list (from 0)"));
  }
  if (config_.cluster.coordination_mode == Coordination::kEtcd) {
    auto leads = Lead();
    if (!leads.ok()) return leads.status();
    if (!*leads) return absl::OkStatus();
  }
  // Every run ends with a summary, also one that failed before the job
  // started (a bad port, a damaged checkpoint).
  if (absl::Status st = Serve(); !st.ok()) {
    if (deposed_) return st;
    job_.SetOutcome(st);
  }
  WriteSummary();
  if (leadership_ != nullptr) {
    const absl::Status& outcome = job_.outcome();
    if (auto st = leadership_->End(outcome.ok() ? "ok" : std::string(outcome.message())); !st.ok()) {
      spdlog::warn("could not record the job's end in etcd (standbys exit when their leader wait ends): {}",
                   st.message());
    }
  }
  return job_.outcome();
}

absl::StatusOr<bool> Scheduler::Lead() {
  // The lease outlives a leader by cluster.heartbeat_timeout, as a node's
  // silence does (etcd refuses leases under about 2 s).
  const int64_t ttl = std::max<int64_t>(2, static_cast<int64_t>(std::ceil(config_.cluster.heartbeat_timeout)));
  // A call to etcd takes at most a third of the lease (etcd syncs each
  // write to disk, which a busy host makes slow), so that the leader
  // renews, every third of the lease, before the lease can run out.
  etcd_ = std::make_unique<EtcdClient>(config_.cluster.etcd_endpoints, std::chrono::milliseconds(ttl * 1000 / 3));
  leadership_ = std::make_unique<Leadership>(etcd_.get(), config_.cluster.etcd_prefix, address_, ttl);
  std::string ended;
  auto outcome = leadership_->Campaign([] { return TerminationRequested(); }, &ended,
                                       std::chrono::duration<double>(config_.cluster.scheduler_grace));
  if (!outcome.ok()) return absl::UnavailableError(absl::StrCat("cluster.coordination: ", outcome.status().message()));
  switch (*outcome) {
    case Leadership::Outcome::kLeading:
      job_.UseStateStore(std::make_unique<EtcdStateStore>(etcd_.get(), leadership_.get()));
      return true;
    case Leadership::Outcome::kJobEnded:
      spdlog::info("the job ended under another scheduler ({}); this standby exits", ended);
      return false;
    case Leadership::Outcome::kStopped:
      spdlog::info("SIGTERM while standing by; exiting");
      return false;
  }
  return false;
}

absl::Status Scheduler::Serve() {
  ConfigureSocket(socket_);
  SPARTA_RETURN_IF_ERROR(watch_.Start());
  // Sending to a peer that is gone must fail visibly, not vanish.
  socket_.set(zmq::sockopt::router_mandatory, 1);
  zap_ = ZapAuthenticator::Start(&context_, config_.cluster);
  SecureServerSocket(socket_, config_.cluster);
  std::string host;
  uint32_t port = 0;
  if (auto st = SplitHostPort(address_, &host, &port); !st.ok()) return st;
  auto bound = BindTcp(socket_, host, port);
  if (!bound.ok()) return bound.status();
  if (auto st = metrics_.Start(config_, host); !st.ok()) return st;
  metrics_.SetIdentity("scheduler", 0);
  spdlog::info("scheduler listening on {}:{}; waiting for {} servers and {} workers", host, *bound,
               config_.cluster.servers, config_.cluster.workers);
  pb::NodeInfo self;
  self.set_role(pb::SCHEDULER);
  self.set_host(host);
  self.set_data_port(*bound);
  self.set_pid(getpid());
  self.set_metrics_port(metrics_.port());
  WriteInfoFile(info_file_, self);
  SPARTA_RETURN_IF_ERROR(job_.Start(Clock::now(), metrics_.port()));
  std::signal(SIGUSR1, OnCheckpointSignal);

  JobCoordinator::Signals signals;
  while (!job_.done()) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, watch_.PollItem()};
    zmq::poll(items, 2, std::chrono::milliseconds(50));
    while (!job_.done()) {
      auto got = ReceiveMessage(socket_, /*from_router=*/true);
      if (!got.ok()) {
        job_.CountDropped();
        spdlog::warn("dropped a message: {}", got.status().message());
        continue;
      }
      if (!got->has_value()) break;
      Message& m = **got;
      const std::string routing_id = m.routing_id->to_string();
      job_.Dispatch(routing_id, m.header, Clock::now());
      SendOutbox();
      if (job_.IsMember(routing_id)) watch_.Seen(m.source_fd, routing_id);
    }
    for (const std::string& routing_id : watch_.Closed()) {
      if (!job_.done()) job_.OnConnectionClosed(routing_id, Clock::now());
    }
    if (job_.has_suspects() && !job_.done()) job_.ProbeSuspects(Clock::now());
    if (checkpoint_signal.exchange(false)) signals.checkpoint = true;
    signals.terminate = signals.terminate || TerminationRequested();
    if (leadership_ != nullptr) {
      absl::Status lead = leadership_->Renew(Clock::now());
      if (lead.ok()) lead = job_.store_status();
      if (!lead.ok()) {
        deposed_ = true;
        return absl::FailedPreconditionError(absl::StrCat("no longer the job's leader: ", lead.message()));
      }
    }
    job_.CheckTimers(Clock::now(), &signals);
    SendOutbox();
    // A change of members or phase is in /metrics at once, not up to a second
    // later: a scrape right after a node joins or dies sees it.
    if (job_.SaveState(Clock::now()) || metrics_.PublishDue()) PublishMetrics();
    SendOutbox();  // the work grants and barrier releases that waited for the save
  }
  SendOutbox();
  AwaitNodesGone();
  // Give the final SHUTDOWN/ABORT messages time to leave before the socket closes.
  socket_.set(zmq::sockopt::linger, 2000);
  socket_.close();
  return job_.outcome();
}

void Scheduler::AwaitNodesGone() {
  // ZeroMQ's linger only waits until the last word has left this process.
  // A node's socket may still drop it unread when the connection closes:
  // one connected to several schedulers (ZMQ_IMMEDIATE, see
  // ConnectToScheduler) ties what it receives to the connection it came
  // over. Each node exits on its last word, which closes its connection;
  // once all have, nothing is left in flight.
  const std::vector<std::string> live = job_.LiveRoutingIds();
  // (A node may have gone already, its close read by the event loop.)
  auto still_open = [&] {
    (void)watch_.Closed();
    std::set<std::string> open;
    for (const std::string& routing_id : live) {
      if (watch_.IsOpen(routing_id)) open.insert(routing_id);
    }
    return open;
  };
  std::set<std::string> open = still_open();
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  while (!open.empty() && Clock::now() < deadline) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, watch_.PollItem()};
    zmq::poll(items, 2, std::chrono::milliseconds(50));
    // What nodes still send (a heartbeat) is dropped; it names the
    // connection of a node that reconnected since its last message.
    while (true) {
      auto got = ReceiveMessage(socket_, /*from_router=*/true);
      if (!got.ok()) continue;
      if (!got->has_value()) break;
      watch_.Seen((**got).source_fd, (**got).routing_id->to_string());
    }
    open = still_open();
  }
  if (!open.empty()) {
    spdlog::warn("{} of {} nodes had not disconnected {} s after the end of the job", open.size(), live.size(), 3);
  }
}

void Scheduler::SendOutbox() {
  for (JobCoordinator::Outgoing& out : job_.TakeOutbox()) {
    zmq::message_t id(out.routing_id.data(), out.routing_id.size());
    if (auto st = SendMessage(socket_, out.header, nullptr, &id); !st.ok()) {
      // A dead node's messages go nowhere (debug); the end of the job must reach every node.
      const bool last_word = out.header.type() == pb::SHUTDOWN || out.header.type() == pb::ABORT;
      spdlog::log(last_word ? spdlog::level::warn : spdlog::level::debug, "could not send {} to {}: {}",
                  MsgTypeName(out.header.type()), Printable(out.routing_id), st.message());
    }
  }
}

void Scheduler::PublishMetrics() {
  MetricWriter out = ClusterMetrics(job_.BuildStatus(Clock::now()), config_.serving.cluster);
  if (zap_ != nullptr) {
    out.Counter("sparta_auth_refused_total", "Connections refused for not holding the cluster key.",
                static_cast<double>(zap_->refused()));
  }
  metrics_.Publish(std::move(out));
}

void Scheduler::WriteSummary() const {
  if (summary_file_.empty()) return;
  if (auto st = WriteProtoJson(summary_file_, job_.BuildSummary()); !st.ok()) spdlog::error("{}", st.message());
}

}  // namespace sparta
