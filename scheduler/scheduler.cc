#include "scheduler/scheduler.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

#include "common/daemon_options.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/proto_json.h"
#include "common/socket_util.h"
#include "common/status_macros.h"
#include "common/termination.h"

namespace sparta {
namespace {
// SIGUSR1 asks for a checkpoint now (scripts/sparta checkpoint RUN sends it).
std::atomic<bool> checkpoint_signal{false};
void OnCheckpointSignal(int) { checkpoint_signal.store(true); }
}  // namespace

using Clock = JobCoordinator::Clock;

Scheduler::Scheduler(const Config& config, std::string summary_file, std::string info_file)
    : config_(config),
      summary_file_(std::move(summary_file)),
      info_file_(std::move(info_file)),
      job_(config),
      context_(1),
      socket_(context_, zmq::socket_type::router),
      watch_(&context_, &socket_) {}

absl::Status Scheduler::Run() {
  // Every run ends with a summary, also one that failed before the job
  // started (a bad port, a damaged checkpoint).
  if (absl::Status st = Serve(); !st.ok()) job_.SetOutcome(st);
  WriteSummary();
  return job_.outcome();
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
  if (auto st = SplitHostPort(config_.cluster.scheduler, &host, &port); !st.ok()) return st;
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
    job_.CheckTimers(Clock::now(), &signals);
    SendOutbox();
    // A change of members or phase is in /metrics at once, not up to a second
    // later: a scrape right after a node joins or dies sees it.
    if (job_.SaveState(Clock::now()) || metrics_.PublishDue()) PublishMetrics();
  }
  SendOutbox();
  // Give the final SHUTDOWN/ABORT messages time to leave before the socket closes.
  socket_.set(zmq::sockopt::linger, 2000);
  socket_.close();
  return job_.outcome();
}

void Scheduler::SendOutbox() {
  for (JobCoordinator::Outgoing& out : job_.TakeOutbox()) {
    zmq::message_t id(out.routing_id.data(), out.routing_id.size());
    if (auto st = SendMessage(socket_, out.header, nullptr, &id); !st.ok()) {
      spdlog::debug("could not send {}: {}", MsgTypeName(out.header.type()), st.message());
    }
  }
}

void Scheduler::PublishMetrics() {
  MetricWriter out = job_.Metrics(Clock::now());
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
