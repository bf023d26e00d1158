#include "common/scheduler_client.h"

#include <chrono>
#include <deque>
#include <optional>

#include <unistd.h>

#include "common/logging.h"

#include "absl/strings/str_cat.h"
#include "common/daemon_options.h"
#include "common/message.h"
#include "common/cluster_auth.h"
#include "common/socket_util.h"
#include "common/termination.h"

namespace sparta {

using Clock = std::chrono::steady_clock;

SchedulerClient::SchedulerClient(zmq::context_t* context, const Config& config, pb::NodeInfo self,
                                 Callbacks callbacks)
    : context_(context), config_(config), callbacks_(std::move(callbacks)), self_(std::move(self)) {}

SchedulerClient::~SchedulerClient() {
  stop_.store(true);
  outbox_.Wake();
  if (thread_.joinable()) thread_.join();
}

pb::NodeInfo SchedulerClient::self() const {
  std::lock_guard<std::mutex> lock(mu_);
  return self_;
}

void SchedulerClient::Post(pb::Header h) { outbox_.Post(std::move(h)); }

absl::Status SchedulerClient::Register() {
  thread_ = std::thread([this] { Run(); });
  pb::Header h;
  h.set_type(pb::REGISTER);
  {
    std::lock_guard<std::mutex> lock(mu_);
    *h.mutable_node() = self_;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    registration_ = h;
  }
  Post(std::move(h));
  std::unique_lock<std::mutex> lock(mu_);
  return WaitUntil(lock, [&] { return registered_; });
}

template <class Pred>
absl::Status SchedulerClient::WaitUntil(std::unique_lock<std::mutex>& lock, Pred ready) {
  cv_.wait(lock, [&] { return ready() || ended_.load(); });
  if (ready()) return absl::OkStatus();
  return end_status_.ok() ? absl::CancelledError("the job has ended") : end_status_;
}

absl::StatusOr<pb::ClusterView> SchedulerClient::WaitForView() {
  std::unique_lock<std::mutex> lock(mu_);
  if (auto st = WaitUntil(lock, [&] { return have_view_; }); !st.ok()) return st;
  return view_;
}

pb::ClusterView SchedulerClient::view() const {
  std::lock_guard<std::mutex> lock(mu_);
  return view_;
}

absl::Status SchedulerClient::Barrier(const std::string& name) {
  pb::Header h;
  h.set_type(pb::BARRIER);
  h.set_barrier(name);
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_barriers_.insert(name);
    h.set_seq(barrier_rounds_[name]);
  }
  Post(std::move(h));
  std::unique_lock<std::mutex> lock(mu_);
  auto st = WaitUntil(lock, [&] { return released_.count(name) > 0; });
  if (st.ok()) released_.erase(released_.find(name));
  waiting_barriers_.erase(waiting_barriers_.find(name));
  return st;
}

size_t SchedulerClient::unsaved_work_done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unsaved_work_done_.size();
}

bool SchedulerClient::drained() const {
  std::lock_guard<std::mutex> lock(mu_);
  return drained_;
}

int SchedulerClient::lead_rank() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lead_rank_;
}

void SchedulerClient::RequestWork(const std::vector<uint64_t>& held) {
  pb::Header h;
  h.set_type(pb::WORK_REQUEST);
  for (uint64_t unit : held) (*h.mutable_progress()->mutable_units())[unit];
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_work_ = true;
    grant_.reset();
    h.set_seq(++work_requests_);
    work_request_ = h;
    work_done_before_request_ = unsaved_work_done_.size();
  }
  Post(std::move(h));
}

absl::StatusOr<std::optional<pb::WorkRange>> SchedulerClient::AwaitWork() {
  std::unique_lock<std::mutex> lock(mu_);
  auto st = WaitUntil(lock, [&] { return grant_.has_value(); });
  waiting_work_ = false;
  if (!st.ok()) return st;
  return *std::exchange(grant_, std::nullopt);
}

void SchedulerClient::SendWorkDone(uint64_t id) {
  pb::Header h;
  h.set_type(pb::WORK_DONE);
  h.mutable_work()->set_id(id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    unsaved_work_done_.push_back(h);
  }
  Post(std::move(h));
}

absl::Status SchedulerClient::WaitForEnd() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return ended_.load(); });
  return end_status_;
}

void SchedulerClient::SendWorkerDone(const pb::WorkerReport& report) {
  pb::Header h;
  h.set_type(pb::WORKER_DONE);
  *h.mutable_report() = report;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sticky_.push_back(h);
  }
  Post(std::move(h));
}

void SchedulerClient::SendFailed(const absl::Status& error) {
  pb::Header h;
  h.set_type(pb::WORKER_DONE);
  h.set_error(error.ToString());
  Post(std::move(h));
}

void SchedulerClient::SendFlushDone(const pb::ServerStats& stats) {
  pb::Header h;
  h.set_type(pb::FLUSH_DONE);
  *h.mutable_server_stats() = stats;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sticky_.push_back(h);
  }
  Post(std::move(h));
}

bool SchedulerClient::HeardWithin(Clock::duration within) const {
  const int64_t last = last_contact_ns_.load();
  return last != 0 && Clock::now() - Clock::time_point(Clock::duration(last)) <= within;
}

void SchedulerClient::End(absl::Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_.load()) return;
    end_status_ = status;
    ended_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
  if (callbacks_.on_end) callbacks_.on_end(status);
}

void SchedulerClient::Handle(const pb::Header& h) {
  switch (h.type()) {
    case pb::REGISTER_REPLY: {
      std::lock_guard<std::mutex> lock(mu_);
      self_.set_id(h.node().id());
      self_.set_rank(h.node().rank());
      registered_ = true;
      break;
    }
    case pb::CLUSTER_VIEW: {
      bool changed;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (have_view_ && h.view().epoch() <= view_.epoch()) return;  // old news
        changed = have_view_;
        view_ = h.view();
        have_view_ = true;
      }
      if (changed && callbacks_.on_control) callbacks_.on_control(h);
      break;
    }
    case pb::PAUSE:
    case pb::RESUME:
    case pb::CHECKPOINT:
    case pb::CLOCK:
    case pb::STAGE_VERSION:
    case pb::MODEL_VERSION:
      if (callbacks_.on_control) callbacks_.on_control(h);
      return;
    case pb::BARRIER_RELEASE: {
      std::lock_guard<std::mutex> lock(mu_);
      uint64_t& round = barrier_rounds_[h.barrier()];
      // The same round's release twice: from the scheduler that died and
      // from the one that took over, to which this node resent the barrier.
      if (h.seq() != 0 && h.seq() <= round) break;
      round = h.seq() != 0 ? h.seq() : round + 1;
      released_.insert(h.barrier());
      if (self_.role() == pb::WORKER) lead_rank_ = h.lead_rank();
      break;
    }
    case pb::WORK_GRANT: {
      {
        std::lock_guard<std::mutex> lock(mu_);
        // A duplicate answer to a resent request, or the answer to one
        // resent before this worker's next request.
        if (!waiting_work_ || grant_.has_value() || h.seq() != work_request_.seq()) return;
      }
      // A worker that waited for work, counted out of the clocks meanwhile,
      // rejoins the others' clock before it trains the unit (ssp).
      if (h.has_work() && h.clock() != 0 && callbacks_.on_control) callbacks_.on_control(h);
      std::lock_guard<std::mutex> lock(mu_);
      if (h.has_work()) {
        // A unit leaves the scheduler only after the save that follows the
        // request it answers (JobCoordinator::SendOnceSaved), and that save
        // holds every unit this worker reported done before the request:
        // as a WORK_DONE it heard, or, where one died with a scheduler, as
        // a unit missing from the request's list of units held. They need
        // no resending. (An answer without a unit is not saved first.)
        unsaved_work_done_.erase(unsaved_work_done_.begin(),
                                 unsaved_work_done_.begin() + static_cast<std::ptrdiff_t>(work_done_before_request_));
        work_done_before_request_ = 0;
      }
      grant_.emplace(h.has_work() ? std::optional<pb::WorkRange>(h.work()) : std::optional<pb::WorkRange>());
      if (!h.has_work() && !h.error().empty()) {
        spdlog::info("{}", h.error());
        drained_ = true;
      }
      break;
    }
    case pb::FLUSH:
      if (callbacks_.on_flush) callbacks_.on_flush();
      return;
    case pb::SHUTDOWN:
      End(absl::OkStatus());
      return;
    case pb::ABORT:
      End(absl::AbortedError(absl::StrCat("job aborted by the scheduler: ", h.error())));
      return;
    case pb::HEARTBEAT:
      if (incarnation_ != 0 && h.seq() != incarnation_) {
        // A restarted scheduler: tell it again what it may have missed.
        spdlog::warn("the scheduler restarted; resending this node's pending messages");
        std::lock_guard<std::mutex> lock(mu_);
        if (!registered_) outbox_.Post(registration_);
        for (const auto& name : waiting_barriers_) {
          pb::Header b;
          b.set_type(pb::BARRIER);
          b.set_barrier(name);
          b.set_resent(true);
          b.set_seq(barrier_rounds_[name]);
          outbox_.Post(b);
        }
        // WORK_DONEs before the request: the request's list of units held
        // leaves out the ones done.
        for (const auto& m : unsaved_work_done_) outbox_.Post(m);
        for (const auto& m : sticky_) outbox_.Post(m);
        if (waiting_work_ && !grant_.has_value()) {
          pb::Header again = work_request_;
          again.set_resent(true);
          outbox_.Post(std::move(again));
        }
      }
      if (incarnation_ != 0 && h.seq() != incarnation_ && callbacks_.on_control) {
        // A checkpoint the old scheduler was taking died with it.
        pb::Header resume;
        resume.set_type(pb::RESUME);
        callbacks_.on_control(resume);
      }
      incarnation_ = h.seq();
      // A serving cluster's echoes repeat its version news (a message
      // with them may have been lost with a restarted scheduler).
      if ((h.model_version() != 0 || h.has_checkpoint()) && callbacks_.on_control) callbacks_.on_control(h);
      return;
    default:
      spdlog::warn("scheduler client: ignoring unexpected {} from the scheduler", MsgTypeName(h.type()));
      return;
  }
  cv_.notify_all();
}

void SchedulerClient::Run() {
  zmq::socket_t socket(*context_, zmq::socket_type::dealer);
  ConfigureSocket(socket);
  {
    // Stable for the life of this process, so a restarted scheduler can
    // address it from its saved state.
    std::lock_guard<std::mutex> lock(mu_);
    socket.set(zmq::sockopt::routing_id,
               absl::StrCat(RoleName(self_.role()), "-", self_.rank(), "-", getpid(), "-", Clock::now().time_since_epoch().count()));
  }
  SecureClientSocket(socket, config_.cluster);
  if (auto st = ConnectToScheduler(socket, config_.cluster.scheduler); !st.ok()) {
    End(st);
    return;
  }
  const auto interval = std::chrono::duration<double>(config_.cluster.heartbeat_interval);
  const auto timeout = std::chrono::duration<double>(config_.cluster.heartbeat_timeout);
  const auto startup = std::chrono::duration<double>(config_.cluster.startup_timeout);
  const auto grace = std::chrono::duration<double>(config_.cluster.scheduler_grace);
  bool warned = false;
  const auto shutdown_grace = std::chrono::duration<double>(config_.cluster.shutdown_grace);
  std::optional<Clock::time_point> terminated;  // when SIGTERM was seen
  const auto started = Clock::now();
  auto last_contact = started;
  auto next_heartbeat = started;
  std::deque<pb::Header> outgoing;

  while (!stop_.load() && !ended_.load()) {
    const auto now = Clock::now();
    bool registered;
    {
      std::lock_guard<std::mutex> lock(mu_);
      registered = registered_;
    }
    if (!terminated && TerminationRequested()) {
      // The scheduler takes the final checkpoint and ends the job; this
      // node waits for that, for at most cluster.shutdown_grace.
      terminated = now;
      spdlog::warn("SIGTERM: asking the scheduler for a final checkpoint; exiting within {} s "
                   "(cluster.shutdown_grace)", config_.cluster.shutdown_grace);
      if (!registered) {
        End(absl::CancelledError("SIGTERM before this node joined the job"));
        break;
      }
      pb::Header preempt;
      preempt.set_type(pb::PREEMPT);
      outgoing.push_back(std::move(preempt));
    }
    if (terminated && now - *terminated > shutdown_grace) {
      End(absl::DeadlineExceededError(absl::StrCat("SIGTERM: the job did not end within cluster.shutdown_grace (",
                                                   config_.cluster.shutdown_grace, " s)")));
      break;
    }
    if (registered && now >= next_heartbeat) {
      pb::Header hb;
      hb.set_type(pb::HEARTBEAT);
      if (callbacks_.on_heartbeat) callbacks_.on_heartbeat(&hb);
      // With no scheduler to take them (one restarting, or standbys
      // between leaders), only the newest heartbeat is worth sending.
      std::erase_if(outgoing, [](const pb::Header& m) { return m.type() == pb::HEARTBEAT; });
      outgoing.push_back(std::move(hb));
      next_heartbeat = now + std::chrono::duration_cast<Clock::duration>(interval);
    }
    // The scheduler echoes every heartbeat; silence means it is gone (or
    // restarting: a registered node gives it scheduler_grace to come back).
    if (registered && !warned && now - last_contact > timeout) {
      spdlog::warn("no answer from the scheduler for {:.1f} s; waiting up to cluster.scheduler_grace ({} s)",
                   std::chrono::duration<double>(now - last_contact).count(), config_.cluster.scheduler_grace);
      warned = true;
    }
    if (registered ? now - last_contact > std::max(timeout, grace) : now - started > startup) {
      End(absl::UnavailableError(absl::StrCat(
          registered ? "lost contact with the scheduler at " : "no answer from the scheduler at ",
          config_.cluster.scheduler, " for ",
          std::chrono::duration<double>(now - last_contact).count(), " s")));
      break;
    }
    while (!outgoing.empty()) {
      pb::Header& h = outgoing.front();
      {
        std::lock_guard<std::mutex> lock(mu_);
        h.set_sender(self_.id());
      }
      if (!SendMessage(socket, h).ok()) break;  // queue full: retry next round
      outgoing.pop_front();
    }

    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, outbox_.fd(), ZMQ_POLLIN, 0}};
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(Clock::duration::zero(), next_heartbeat - Clock::now()));
    zmq::poll(items, 2, std::chrono::milliseconds(std::clamp<int64_t>(wait.count(), 1, 100)));
    if (items[1].revents & ZMQ_POLLIN) outbox_.Drain(&outgoing);
    while (true) {
      auto got = ReceiveMessage(socket, /*from_router=*/false);
      if (!got.ok()) {
        spdlog::warn("scheduler client: dropped a message: {}", got.status().ToString());
        continue;
      }
      if (!got->has_value()) break;
      last_contact = Clock::now();
      last_contact_ns_.store(last_contact.time_since_epoch().count());
      warned = false;
      Handle((*got)->header);
    }
  }
  // A node that stops (e.g. after SendFailed) must not lose what it said
  // last: it is sent, with a second to leave, before the socket closes.
  outbox_.Drain(&outgoing);
  for (pb::Header& h : outgoing) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      h.set_sender(self_.id());
    }
    if (h.type() != pb::HEARTBEAT) (void)SendMessage(socket, h);
  }
  socket.set(zmq::sockopt::linger, 1000);
}

}  // namespace sparta
