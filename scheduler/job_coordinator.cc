#include "scheduler/job_coordinator.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checkpoint_files.h"
#include "common/daemon_options.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/status_macros.h"
#include "scheduler/connection_watch.h"

namespace sparta {

using Clock = Membership::Clock;

JobCoordinator::JobCoordinator(const Config& config)
    : config_(config),
      members_(config.cluster.servers, config.cluster.workers),
      clocks_(config.cluster.workers),
      shard_map_(config.cluster.num_shards, config.cluster.servers, config.storage.replication_factor),
      scaling_(config_, &members_, &shard_map_),
      checkpoints_(config, {.broadcast = [this](const pb::Header& h, pb::Role role) { Broadcast(h, role); },
                            .fail = [this](const std::string& reason) { Fail(reason); },
                            .live_servers = [this] { return members_.joined(pb::SERVER); },
                            .live_workers =
                                [this] {
                                  std::vector<int> ranks;
                                  for (const auto& n : members_.nodes()) {
                                    const bool counted = !work_ || !n.dead;
                                    if (n.info.role() == pb::WORKER && counted) ranks.push_back(n.info.rank());
                                  }
                                  return ranks;
                                },
                            .work_left = config.data.assignment_mode != Assignment::kOnDemand
                                             ? CheckpointCoordinator::Hooks::WorkLeft()
                                             : [this](const std::function<uint64_t(uint64_t)>& trained) {
                                                 return work_ ? work_->pool().Progress(trained) : pb::WorkProgress();
                                               },
                            .shard_owner = [this] { return shard_map_.owners(); }}) {}

absl::Status JobCoordinator::Start(Clock::time_point now, uint32_t metrics_port) {
  metrics_port_ = metrics_port;
  started_ = last_silence_check_ = last_checkpoint_ = last_publish_ = last_saved_ = now;
  incarnation_ = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) | 1;
  auto took_over = TakeOverSavedJob();
  if (!took_over.ok()) return took_over.status();
  if (!*took_over) {
    SPARTA_RETURN_IF_ERROR(PrepareRestore());
    checkpoints_.BeginJob(restore_version_);
  }
  if (config_.serving.cluster) return absl::OkStatus();  // no input to hand out
  if (!*took_over && config_.data.assignment_mode == Assignment::kOnDemand && restore_work_) {
    work_ = WorkDispatcher(WorkPool::Restore(*restore_work_));
    // The files the cut had seen are not taken in again; the others are,
    // at the first look.
    if (config_.data.follow) work_->Follow();
  } else if (!*took_over && config_.data.assignment_mode == Assignment::kOnDemand) {
    auto work = WorkDispatcher::ForJob(config_);
    if (!work.ok()) return work.status();
    work_ = *std::move(work);
  } else if (*took_over && config_.data.assignment_mode == Assignment::kOnDemand && !work_) {
    return absl::FailedPreconditionError("the saved job has no work pool, but data.assignment is on_demand");
  }
  return absl::OkStatus();
}

void JobCoordinator::Dispatch(const std::string& routing_id, const pb::Header& h, Clock::time_point now) {
  if (h.type() == pb::REGISTER) return OnRegister(routing_id, h, now);
  switch (h.type()) {
    case pb::CHECKPOINT_REQUEST: {
      // Also sent by worker 0 for storage.checkpoint_every "<n> steps";
      // only an operator (a peer that is not a node) gets an answer.
      absl::Status st;
      if (phase_ != Phase::kRunning || stopped_) {
        st = absl::FailedPreconditionError("the job is not running");
      } else if (!checkpoints_.enabled()) {
        st = absl::FailedPreconditionError("checkpoints need storage.path (where they go)");
      } else {
        checkpoints_.Start("requested");
      }
      if (members_.FindByRoutingId(routing_id) == nullptr) Reply(routing_id, pb::RESPONSE, st);
      return;
    }
    case pb::STATUS_REQUEST: {
      pb::Header reply;
      reply.set_type(pb::STATUS_REPLY);
      *reply.mutable_cluster_status() = BuildStatus(now);
      return SendTo(routing_id, std::move(reply));
    }
    case pb::STOP_REQUEST:
      return OnStop(routing_id);
    case pb::DRAIN_REQUEST:
      return OnDrain(routing_id, h.node());
    case pb::SCALE_REQUEST:
      return OnScale(routing_id, h.scale_servers());
    default:
      break;
  }
  Membership::Node* node = members_.FindByRoutingId(routing_id);
  if (node == nullptr) {
    ++dropped_messages_;
    spdlog::warn("dropped {} from an unregistered peer", MsgTypeName(h.type()));
    return;
  }
  if (node->dead) {
    // A node the cluster has moved on from (e.g. after a partition) must
    // not act on its old view: it is told so and exits.
    pb::Header abort;
    abort.set_type(pb::ABORT);
    abort.set_error(absl::StrCat(DescribeNode(node->info), " was declared dead; the cluster is at epoch ", epoch_,
                                 ". Restart it to rejoin as a fresh server."));
    SendTo(routing_id, std::move(abort));
    return;
  }
  node->last_seen = now;
  if (!unheard_.empty() && unheard_.erase(node->info.id()) && unheard_.empty()) {
    spdlog::info("every node has reconnected to this scheduler");
    if (finish_after_resync_ && phase_ == Phase::kRunning) FinishTraining();
  }
  switch (h.type()) {
    case pb::HEARTBEAT: {
      if (h.has_server_stats()) {
        node->stats = h.server_stats();
        const auto& incomplete = node->stats.incomplete_shards();
        if (node->info.role() == pb::SERVER &&
            shard_map_.OnServerReport(node->info.rank(), node->stats.view_epoch(),
                                      std::vector<uint32_t>(incomplete.begin(), incomplete.end())) > 0) {
          state_changed_ = true;
          if (shard_map_.catching_up() == 0) spdlog::info("every shard replica is whole");
        }
        if (node->info.role() == pb::SERVER && shard_map_.moving() > 0) AdvanceMoves();
        ResendViewIfBehind(node, now);
        if (follower_ != nullptr && node->info.role() == pb::SERVER) {
          OnVersionStaged(*node, node->stats.staged_version(), nullptr);
        }
      }
      if (h.has_progress()) node->progress = h.progress();
      pb::Header echo;
      echo.set_type(pb::HEARTBEAT);
      echo.set_seq(incarnation_);
      if (follower_ != nullptr) AddVersionNews(*node, &echo);
      SendTo(routing_id, std::move(echo));
      return;
    }
    case pb::VERSION_STAGED:
      if (follower_ != nullptr && node->info.role() == pb::SERVER) {
        OnVersionStaged(*node, h.checkpoint().version(), h.status() != 0 ? &h : nullptr);
      }
      return;
    case pb::SHARDS_HANDED_OFF: {
      if (node->info.role() != pb::SERVER || !h.has_server_stats()) return;
      const auto& shards = h.server_stats().handed_off();
      if (shard_map_.OnHandedOff(node->info.rank(), h.server_stats().view_epoch(),
                                 std::vector<uint32_t>(shards.begin(), shards.end())) > 0) {
        AdvanceMoves();
      }
      return;
    }
    case pb::BARRIER:
      return OnBarrier(*node, h);
    case pb::PREEMPT:
      if (node->info.role() == pb::SERVING) {
        // One front-end going (a Deployment scaled down) is not the
        // serving cluster's end: it alone is let go.
        OnFrontEndLost(node, "got SIGTERM");
        pb::Header shutdown;
        shutdown.set_type(pb::SHUTDOWN);
        return SendTo(routing_id, std::move(shutdown));
      }
      return OnPreempt(absl::StrCat(DescribeNode(node->info), " got SIGTERM"), now);
    case pb::CLOCK:
      if (node->info.role() != pb::WORKER) break;
      if (auto min = clocks_.Update(node->info.rank(), h.clock())) {
        pb::Header tick;
        tick.set_type(pb::CLOCK);
        tick.set_clock(*min);
        Broadcast(tick, pb::WORKER);
      }
      return;
    case pb::WORK_REQUEST: {
      if (node->info.role() != pb::WORKER || !work_) break;
      // The units the worker still holds (see WorkDispatcher::OnRequest).
      std::vector<uint64_t> held;
      for (const auto& [unit, progress] : h.progress().units()) held.push_back(unit);
      work_requests_[node->info.id()] = h.seq();
      work_->OnRequest(node->info.id(), routing_id, &held, h.resent());
      return SendWork();
    }
    case pb::WORK_DONE:
      if (node->info.role() != pb::WORKER || !work_ || !h.has_work()) break;
      work_->OnDone(node->info.id(), h.work().id());
      state_changed_ = true;
      SendWork();
      return FinishIfAllReported();
    case pb::WORKER_DONE:
      if (!h.error().empty()) return Fail(absl::StrCat(DescribeNode(node->info), " failed: ", h.error()));
      if (node->info.role() != pb::WORKER) break;
      return OnWorkerDone(*node, h.report());
    case pb::FLUSH_DONE:
      if (node->info.role() == pb::SERVER) return OnFlushDone(*node, h.server_stats());
      break;
    case pb::PAUSED:
      if (node->info.role() == pb::WORKER) {
        return checkpoints_.OnPaused(node->info.rank(), h.checkpoint(), h.progress(), h.error());
      }
      break;
    case pb::CHECKPOINT_DONE:
      if (node->info.role() == pb::SERVER) return checkpoints_.OnServerDone(node->info.rank(), h);
      break;
    default:
      break;
  }
  ++dropped_messages_;
  spdlog::warn("dropped unexpected {} from {}", MsgTypeName(h.type()), DescribeNode(node->info));
}

void JobCoordinator::OnRegister(const std::string& routing_id, const pb::Header& h, Clock::time_point now) {
  auto reject = [&](const std::string& why) {
    spdlog::warn("refused registration of a {} from {}: {}", RoleName(h.node().role()), h.node().host(), why);
    pb::Header abort;
    abort.set_type(pb::ABORT);
    abort.set_error(absl::StrCat("registration refused: ", why));
    SendTo(routing_id, std::move(abort));
  };
  if (members_.FindByRoutingId(routing_id) != nullptr) return;  // a resent REGISTER
  if (h.node().role() == pb::SERVING) {
    if (!config_.serving.cluster) {
      return reject("this scheduler runs a training job; a sparta-serve with serving.shards registers with a "
                    "serving cluster's scheduler (scripts/sparta serve, or sparta-scheduler --serving)");
    }
    return OnFrontEndRegister(routing_id, h.node(), now);
  }
  if (config_.serving.cluster && h.node().role() == pb::WORKER) {
    return reject("a serving cluster trains nothing: it takes no workers");
  }
  // sparta-server --join: a server added to the running job; shards move
  // to it until rows are balanced (BalanceRows).
  // Else a server registering while the job runs takes a dead server's
  // rank and gets replicas (it holds no rows: without replicas there is
  // nothing it could get them from); so does one that joins where moves
  // cannot be made (storage.ack primary).
  const bool replacement = phase_ == Phase::kRunning && h.node().role() == pb::SERVER &&
                           config_.storage.replication_factor > 1;
  const bool joining_server = phase_ == Phase::kRunning && h.node().role() == pb::SERVER && h.node().join() &&
                              (config_.storage.ack_mode == AckMode::kAll || !replacement);
  // on_demand: a worker may join the running job (a restarted one, or one
  // started by hand); after training it has nothing to do and is let go.
  const bool late_worker = phase_ != Phase::kRegistering && h.node().role() == pb::WORKER && work_.has_value();
  if (late_worker && phase_ != Phase::kRunning) {
    spdlog::info("a worker from {} registered after training ended; told to exit", h.node().host());
    pb::Header shutdown;
    shutdown.set_type(pb::SHUTDOWN);
    return SendTo(routing_id, std::move(shutdown));
  }
  if (phase_ != Phase::kRegistering && !replacement && !late_worker && !joining_server) {
    return reject("the job has already started");
  }
  if (joining_server && config_.storage.ack_mode != AckMode::kAll) {
    return reject(kMovesNeedAckAll);
  }
  pb::NodeInfo requested = h.node();
  // Before the job runs, a server or worker started with --join is one of
  // the job's own: it takes a free rank, and the job does not grow.
  if (phase_ == Phase::kRegistering) requested.set_join(false);
  auto added = members_.Add(requested, routing_id, now);
  if (!added.ok()) return reject(std::string(added.status().message()));
  spdlog::info("registered {} ({} of {} servers, {} of {} workers)", DescribeNode(*added),
               members_.joined(pb::SERVER), config_.cluster.servers, members_.joined(pb::WORKER),
               config_.cluster.workers);
  state_changed_ = true;
  pb::Header reply;
  reply.set_type(pb::REGISTER_REPLY);
  *reply.mutable_node() = *added;
  SendTo(routing_id, std::move(reply));
  if (late_worker) return OnWorkerJoined(*added, routing_id);
  if (joining_server) {
    const ServerScaling::Joined joined = scaling_.OnServerJoined(epoch_ + 1);
    spdlog::info("{} joined the running job ({} of {} servers wanted); {} shard copies move to it until rows are "
                 "balanced{}",
                 DescribeNode(*added), members_.joined(pb::SERVER), scaling_.wanted(), joined.moving,
                 joined.placed > 0 ? absl::StrCat(", ", joined.placed, " replicas placed to restore replication") : "");
    PublishView();
    return;
  }
  if (replacement) {
    if (follower_ != nullptr) follower_->Exclude(added->id());
    const int placed = shard_map_.AddServer(added->rank(), scaling_.Staying(), epoch_ + 1);
    spdlog::info("{} joined the running job; {} shard replicas placed on it", DescribeNode(*added), placed);
    PublishView();
    return;
  }
  if (members_.complete()) PublishView();
}

void JobCoordinator::OnFrontEndRegister(const std::string& routing_id, const pb::NodeInfo& node,
                                        Clock::time_point now) {
  // One started under the rank of a live one replaces it: a launcher starts
  // a front-end again under its rank once the old one's process is gone,
  // which the scheduler may not have noticed yet (kill -9).
  if (node.rank() >= 0) {
    for (const auto& n : members_.nodes()) {
      if (n.info.role() != pb::SERVING || n.dead || n.info.rank() != node.rank()) continue;
      OnFrontEndLost(members_.FindByRoutingId(n.routing_id), "is replaced by a new front-end under its rank");
      break;
    }
  }
  auto added = members_.Add(node, routing_id, now);
  if (!added.ok()) {
    pb::Header abort;
    abort.set_type(pb::ABORT);
    abort.set_error(absl::StrCat("registration refused: ", added.status().message()));
    return SendTo(routing_id, std::move(abort));
  }
  spdlog::info("registered {}", DescribeNode(*added));
  pb::Header reply;
  reply.set_type(pb::REGISTER_REPLY);
  *reply.mutable_node() = *added;
  SendTo(routing_id, std::move(reply));
  if (phase_ == Phase::kRegistering) return;  // the first view, sent to every node, names the version
  pb::Header h;
  h.set_type(pb::CLUSTER_VIEW);
  *h.mutable_view() = view_;
  h.mutable_view()->set_restore_from(restore_from_);
  h.mutable_view()->set_restore_version(restore_version_);
  SendTo(routing_id, std::move(h));
}

void JobCoordinator::OnFrontEndLost(Membership::Node* node, const std::string& why) {
  node->dead = true;
  spdlog::warn("{} {}; the serving cluster goes on", DescribeNode(node->info), why);
}

void JobCoordinator::OnServerLost(Membership::Node* node, const std::string& why) {
  if (phase_ == Phase::kRegistering) return Fail(absl::StrCat(DescribeNode(node->info), " ", why));
  node->dead = true;
  state_changed_ = true;
  if (unheard_.erase(node->info.id()) && unheard_.empty() && finish_after_resync_) FinishTraining();
  const uint32_t rank = node->info.rank();
  auto applied = [this](uint32_t r, uint32_t shard) -> uint64_t {
    for (const auto& n : members_.nodes()) {
      if (!n.dead && n.info.role() == pb::SERVER && n.info.rank() == static_cast<int>(r) &&
          shard < static_cast<uint32_t>(n.stats.shard_applied_size())) {
        return n.stats.shard_applied(shard);
      }
    }
    return 0;
  };
  const std::vector<uint32_t> lost = shard_map_.RemoveServer(rank, applied);
  if (!lost.empty()) return OnShardsLost(*node, why, lost);
  // The next view places the new replicas; they catch up from it. None
  // goes to a server that is being drained.
  const int added = shard_map_.RestoreReplication(scaling_.Staying(), epoch_ + 1);
  // Moves to the dead server ended with it: a drained server's copies
  // that were going there move again, to the servers that stay.
  scaling_.Redrain(epoch_ + 1);
  spdlog::warn("{} {}: failing over to its replicas; {} new replicas restore the replication factor",
               DescribeNode(node->info), why, added);
  checkpoints_.Abandon(absl::StrCat("server-", rank, " died"));
  PublishView();
}

void JobCoordinator::OnShardsLost(const Membership::Node& node, const std::string& why,
                             const std::vector<uint32_t>& lost) {
  // Every server declared dead (this one too) may have held a copy.
  std::vector<std::string> dead;
  for (const auto& n : members_.nodes()) {
    if (n.info.role() == pb::SERVER && n.dead) {
      dead.push_back(absl::StrCat("server-", n.info.rank()));
      lost_.add_dead_servers(n.info.rank());
    }
  }
  for (uint32_t s : lost) lost_.add_lost_shards(s);
  std::string shards;
  for (size_t i = 0; i < lost.size() && i < 16; ++i) absl::StrAppend(&shards, i ? ", " : "", lost[i]);
  if (lost.size() > 16) absl::StrAppend(&shards, ", ...");
  std::string reason = absl::StrCat(
      DescribeNode(node.info), " ", why, "; ", lost.size(), " of ", config_.cluster.num_shards,
      " shards lost every copy (shards ", shards, "; dead servers: ", absl::StrJoin(dead, ", "),
      "; storage.replication_factor is ", config_.storage.replication_factor, ")");
  // The newest checkpoint of this job: one it published, else the one it
  // resumed from. (Older checkpoints under storage.path may be another job's.)
  std::string checkpoint = checkpoints_.published_dir();
  std::vector<uint64_t> steps;
  if (!checkpoint.empty()) {
    if (auto manifest = ReadManifest(checkpoint); manifest.ok()) {
      steps.assign(manifest->worker_steps().begin(), manifest->worker_steps().end());
    } else {
      checkpoint.clear();
    }
  }
  if (checkpoint.empty() && !restore_from_.empty()) {
    checkpoint = restore_from_;
    steps = restore_steps_;
  }
  if (!checkpoint.empty()) {
    lost_.set_rollback_checkpoint(checkpoint);
    for (uint64_t s : steps) lost_.add_rollback_steps(static_cast<double>(s));
    absl::StrAppend(&reason, ". The job can go on from checkpoint ", checkpoint,
                    " (scripts/sparta launch rolls back to it by itself; by hand: storage.restore=", checkpoint, ")");
  } else {
    absl::StrAppend(&reason, ". There is no checkpoint to go back to: set storage.checkpoint_every (e.g. 300s) so "
                             "that a job can roll back, or raise storage.replication_factor so that a shard "
                             "survives more servers dying at once");
  }
  Fail(reason);
}

void JobCoordinator::ResendViewIfBehind(Membership::Node* node, Clock::time_point now) {
  // A server whose heartbeats name an older view than the current one for
  // a second (a heartbeat sent while a view is on its way names the old
  // one for a moment) missed it: the only copy may have died with a
  // scheduler this one took over from (sent to a server that was stopped,
  // it was never delivered), and no newer view may ever come. Sent again at
  // most once a second; a node ignores a view no newer than its own. Only
  // to a server that has adopted a view and is in this one: the first view
  // (which may carry a restore) and a joining server's own go out as they
  // always did.
  const uint64_t has = node->stats.view_epoch();
  if (node->info.role() != pb::SERVER || phase_ != Phase::kRunning || has == 0 || has >= view_.epoch()) {
    node->behind_since = Clock::time_point{};
    return;
  }
  if (node->behind_since == Clock::time_point{}) node->behind_since = now;
  if (now - node->behind_since < std::chrono::seconds(1) || now - node->view_resent < std::chrono::seconds(1) ||
      std::none_of(view_.nodes().begin(), view_.nodes().end(),
                   [&](const pb::NodeInfo& n) { return n.id() == node->info.id(); })) {
    return;
  }
  node->view_resent = now;
  spdlog::info("{} is at view epoch {}, behind {}: sending the view again", DescribeNode(node->info),
               node->stats.view_epoch(), view_.epoch());
  pb::Header again;
  again.set_type(pb::CLUSTER_VIEW);
  *again.mutable_view() = view_;
  again.set_epoch(view_.epoch());
  SendTo(node->routing_id, std::move(again));
}

void JobCoordinator::PublishView() {
  pb::Header h;
  h.set_type(pb::CLUSTER_VIEW);
  pb::ClusterView* view = h.mutable_view();
  view->set_epoch(++epoch_);
  for (const auto& node : members_.nodes()) {
    if (!node.dead) *view->add_nodes() = node.info;
  }
  const auto live = members_.LiveServers();
  for (int r = 0; r < members_.expected(pb::SERVER); ++r) {
    if (!std::binary_search(live.begin(), live.end(), static_cast<uint32_t>(r))) view->add_dead_servers(r);
  }
  shard_map_.ToView(view);
  view->set_running(phase_ != Phase::kRegistering);
  if (follower_ != nullptr && follower_->announced() != restore_version_) view->set_model_version(follower_->announced());
  view_ = *view;
  state_changed_ = true;
  // Only the first view: a server joining later gets its rows from replicas.
  if (!restore_from_.empty() && phase_ == Phase::kRegistering) {
    view->set_restore_from(restore_from_);
    view->set_restore_version(restore_version_);
    for (uint64_t steps : restore_steps_) view->add_worker_steps(steps);
  }
  h.set_epoch(epoch_);
  const bool first = phase_ == Phase::kRegistering;
  if (first) {
    phase_ = Phase::kRunning;
    running_since_ = Clock::now();
  }
  // Saved before it is sent: a scheduler that takes over after this one
  // died must number on from every view a node may have seen (a node
  // ignores a view no newer than its own), and go on with its moves.
  // One that another scheduler has replaced sends nothing (it stops).
  SaveState(Clock::now());
  unreported_change_ = true;
  if (!store_status_.ok()) return;
  Broadcast(h);
  if (first) {
    spdlog::info("all {} nodes registered; published cluster view epoch {} with {} shards",
                 members_.nodes().size(), epoch_, config_.cluster.num_shards);
  } else {
    spdlog::info("published cluster view epoch {} ({} live servers)", epoch_, live.size());
  }
}

void JobCoordinator::OnBarrier(const Membership::Node& node, const pb::Header& h) {
  const pb::Role role = node.info.role();
  pb::Header release;
  const BarrierTable::Arrival arrival =
      barriers_.Arrive(role, h.barrier(), node.info.id(), h.resent(), h.seq(), &release);
  if (arrival == BarrierTable::Arrival::kWaits) return ReleaseIfComplete(role, h.barrier());
  spdlog::info("{} arrived at barrier '{}' after its release{}: it passes at once", DescribeNode(node.info),
               h.barrier(), arrival == BarrierTable::Arrival::kReleaseLost ? " (the release it was sent was lost)" : "");
  SendOnceSaved(node.routing_id, std::move(release));
}

int JobCoordinator::BarrierSize(pb::Role role) const {
  if (role != pb::WORKER || !work_) return members_.expected(role);
  int live = 0;
  for (const auto& n : members_.nodes()) live += n.info.role() == pb::WORKER && !n.dead;
  return live;
}

int JobCoordinator::LeadWorker() const {
  int lead = -1;
  for (const auto& n : members_.nodes()) {
    if (n.info.role() == pb::WORKER && !n.dead && (lead < 0 || n.info.rank() < lead)) lead = n.info.rank();
  }
  return lead;
}

void JobCoordinator::ReleaseIfComplete(pb::Role role, const std::string& name) {
  const std::optional<pb::Header> release =
      barriers_.ReleaseIfComplete(role, name, BarrierSize(role), role == pb::WORKER ? LeadWorker() : -1,
                                  [this](uint32_t id) {
                                    const Membership::Node* n = members_.FindById(id);
                                    return n != nullptr && !n->dead;
                                  });
  if (!release) return;
  spdlog::info("barrier '{}' of {}s released", name, RoleName(role));
  for (const auto& node : members_.nodes()) {
    if (!node.dead && node.info.role() == role) SendOnceSaved(node.routing_id, *release);
  }
}

void JobCoordinator::SendWork() {
  if (!work_) return;
  const bool clocked = config_.worker.consistency_mode != Consistency::kAsp;
  for (auto& out : work_->TakeOutbox()) {
    Membership::Node* node = members_.FindByRoutingId(out.routing_id);
    // A worker has one request open at a time: this answers its latest.
    if (node != nullptr) {
      if (auto seq = work_requests_.find(node->info.id()); seq != work_requests_.end()) {
        out.header.set_seq(seq->second);
      }
    }
    if (clocked && node != nullptr && out.header.has_work()) {
      if (auto it = idle_clocks_.find(node->info.id()); it != idle_clocks_.end()) {
        // Back from idle: it rejoins the clocks where the others are.
        const uint64_t clock = clocks_.Rejoin(node->info.rank(), it->second);
        spdlog::info("{} gets work again: it rejoins the clocks at {}", DescribeNode(node->info), clock);
        out.header.set_clock(clock);
        idle_clocks_.erase(it);
      }
    }
    if (out.header.has_work()) {
      SendOnceSaved(out.routing_id, std::move(out.header));
      continue;
    }
    SendTo(out.routing_id, std::move(out.header));
  }
  if (clocked) CountOutIdleWorkers();
}

void JobCoordinator::CountOutIdleWorkers() {
  // A worker waiting for a unit while every one left is in flight elsewhere
  // would hold the slowest clock, and so the workers that hold those
  // units, while it waits for them: counted out until it gets one.
  for (const auto& node : members_.nodes()) {
    if (node.info.role() != pb::WORKER || node.dead || idle_clocks_.count(node.info.id())) continue;
    if (!work_->Idle(node.info.id())) continue;
    const int rank = node.info.rank();
    const uint64_t clock = clocks_.clock(rank);
    if (clock == ClockTable::kFinished) continue;
    idle_clocks_[node.info.id()] = clock;
    spdlog::info("{} waits for work at clock {}: the others' clocks go on without it", DescribeNode(node.info),
                 clock);
    CountOutOfClocks(rank);
  }
}

void JobCoordinator::CountOutOfClocks(int rank) {
  if (auto min = clocks_.Remove(rank)) {
    pb::Header tick;
    tick.set_type(pb::CLOCK);
    tick.set_clock(*min);
    Broadcast(tick, pb::WORKER);
  }
}

void JobCoordinator::OnWorkerLost(Membership::Node* node, const std::string& why) {
  if (!work_ || phase_ == Phase::kRegistering) return Fail(absl::StrCat(DescribeNode(node->info), " ", why));
  node->dead = true;
  state_changed_ = true;
  ++workers_lost_;
  lost_examples_ += static_cast<double>(node->progress.examples());
  const size_t units = work_->OnLost(node->info.id(), node->progress);
  spdlog::warn("{} {}: its {} work units go back to the pool{}", DescribeNode(node->info), why, units,
               config_.worker.restart ? "; the launcher may start a fresh worker under its rank" : "");
  SendWork();
  if (unheard_.erase(node->info.id()) && unheard_.empty() && finish_after_resync_) FinishTraining();
  if (phase_ == Phase::kRunning && LeadWorker() < 0 && !config_.worker.restart) {
    return Fail(absl::StrCat(DescribeNode(node->info), " ", why, ", and it was the last worker (worker.restart is false)"));
  }
  AfterWorkerGone(*node);
}

void JobCoordinator::AfterWorkerGone(const Membership::Node& node) {
  idle_clocks_.erase(node.info.id());
  CountOutOfClocks(node.info.rank());
  // A checkpoint pausing the workers no longer waits for this one.
  checkpoints_.OnWorkerLost();
  if (phase_ != Phase::kRunning) return;
  for (const std::string& name : barriers_.Open(pb::WORKER)) ReleaseIfComplete(pb::WORKER, name);
  FinishIfAllReported();
}

void JobCoordinator::OnWorkerJoined(const pb::NodeInfo& node, const std::string& routing_id) {
  const uint64_t clock = clocks_.Rejoin(node.rank());
  spdlog::info("{} joined the running job at clock {}", DescribeNode(node), clock);
  // This view only for the newcomer: its own place (steps) to count from.
  pb::Header h;
  h.set_type(pb::CLUSTER_VIEW);
  *h.mutable_view() = view_;
  h.mutable_view()->clear_worker_steps();
  const int ranks = std::max(config_.cluster.workers, node.rank() + 1);
  for (int r = 0; r < ranks; ++r) h.mutable_view()->add_worker_steps(clock * config_.worker.threads);
  h.set_epoch(epoch_);
  SendTo(routing_id, std::move(h));
}

void JobCoordinator::OnWorkerDone(Membership::Node& node, const pb::WorkerReport& report) {
  if (draining_workers_.count(node.info.id())) {
    reports_[node.info.rank()] = report;
    return OnWorkerLeft(&node);
  }
  if (reports_.count(node.info.rank())) return;  // resent to a restarted scheduler
  reports_[node.info.rank()] = report;
  state_changed_ = true;
  spdlog::info("{} finished: {} examples in {:.2f} s", DescribeNode(node.info), report.train_examples(),
               report.train_seconds());
  FinishIfAllReported();
}

void JobCoordinator::FinishIfAllReported() {
  if (phase_ != Phase::kRunning) return;
  if (!work_) {
    if (static_cast<int>(reports_.size()) == config_.cluster.workers) FinishTraining();
    return;
  }
  // on_demand: a live worker reports once the pool has nothing more for it.
  if (!work_->finished() || LeadWorker() < 0) return;
  for (const auto& n : members_.nodes()) {
    if (n.info.role() == pb::WORKER && !n.dead && !reports_.count(n.info.rank())) return;
  }
  FinishTraining();
}

void JobCoordinator::FinishTraining() {
  phase_ = Phase::kFlushing;
  state_changed_ = true;
  auto flush = [this] {
    spdlog::info("all workers finished; asking servers to flush");
    pb::Header h;
    h.set_type(pb::FLUSH);
    Broadcast(h, pb::SERVER);
  };
  // The final model is always saved when there is somewhere to save it.
  if (checkpoints_.enabled()) {
    checkpoints_.Start("end of job", flush);
  } else {
    flush();
  }
}

void JobCoordinator::OnFlushDone(const Membership::Node& node, const pb::ServerStats& stats) {
  flushed_[node.info.rank()] = stats;
  state_changed_ = true;
  if (static_cast<int>(flushed_.size()) < members_.joined(pb::SERVER) || phase_ != Phase::kFlushing) return;
  ShutDown("all servers flushed; shutting the cluster down");
}

void JobCoordinator::ShutDown(const std::string& why) {
  spdlog::info("{}", why);
  pb::Header shutdown;
  shutdown.set_type(pb::SHUTDOWN);
  Broadcast(shutdown);
  phase_ = Phase::kDone;
  ended_at_ = Clock::now();
  state_changed_ = true;
  SaveState(Clock::now());
}

void JobCoordinator::CheckTimers(Clock::time_point now, Signals* signals) {
  if (phase_ == Phase::kRegistering) {
    if (now - started_ > std::chrono::duration<double>(config_.cluster.startup_timeout)) {
      Fail(absl::StrCat("start-up timed out after ", config_.cluster.startup_timeout,
                        " s (cluster.startup_timeout); never registered: ", members_.DescribeMissing()));
    }
  }
  if (phase_ == Phase::kDone) return;
  PollVersions(now);
  if (signals->terminate) {
    signals->terminate = false;
    OnPreempt("SIGTERM", now);
  }
  if (preempt_deadline_ && now > *preempt_deadline_) {
    return Fail(absl::StrCat("preempted, and the final checkpoint did not finish within cluster.shutdown_grace (",
                             config_.cluster.shutdown_grace, " s); the newest complete checkpoint is version ",
                             checkpoints_.last_version()));
  }
  if (work_ && config_.data.follow && (phase_ == Phase::kRegistering || phase_ == Phase::kRunning) &&
      !stopped_ && now - last_follow_look_ >= std::chrono::duration<double>(config_.data.follow_interval)) {
    last_follow_look_ = now;
    auto arrived = work_->TakeInArrived(config_);
    if (!arrived.ok()) {
      // A file gone between its listing and its size, a folder unreadable
      // for a moment: the next look tries again.
      spdlog::warn("data.follow: {}", std::string(arrived.status().message()));
    } else if (!arrived->empty()) {
      state_changed_ = true;
      SendWork();
    }
  }
  if (phase_ == Phase::kRunning && checkpoints_.enabled() && !checkpoints_.busy()) {
    const double every = config_.storage.every.seconds;
    if (signals->checkpoint) {
      signals->checkpoint = false;
      checkpoints_.Start("SIGUSR1");
    } else if (every > 0 && now - last_checkpoint_ > std::chrono::duration<double>(every)) {
      last_checkpoint_ = now;
      checkpoints_.Start(absl::StrCat("every ", config_.storage.checkpoint_every));
    } else if (config_.serving.publish_every_seconds > 0 &&
               now - last_publish_ > std::chrono::duration<double>(config_.serving.publish_every_seconds)) {
      last_publish_ = now;
      checkpoints_.Publish();
    }
  }
  // A stalled scheduler (e.g. stopped in a debugger) must not blame the nodes:
  // only judge silence when this loop itself has been running on time.
  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(config_.cluster.heartbeat_timeout));
  const bool loop_on_time = now - last_silence_check_ < timeout / 2;
  last_silence_check_ = now;
  if (!loop_on_time) return;
  if (Membership::Node* silent = members_.FindSilent(now, timeout)) {
    const std::string why =
        absl::StrCat("stopped responding: no heartbeat for ", std::chrono::duration<double>(now - silent->last_seen).count(),
                     " s (cluster.heartbeat_timeout is ", config_.cluster.heartbeat_timeout, " s)");
    if (silent->info.role() == pb::SERVER) return OnServerLost(silent, why);
    if (silent->info.role() == pb::SERVING) return OnFrontEndLost(silent, why);
    OnWorkerLost(silent, why);
  }
}

void JobCoordinator::OnConnectionClosed(const std::string& routing_id, Clock::time_point now) {
  // Suspected from now on: probed at every turn of the loop until its port
  // refuses connections or the suspicion expires. A dying process closes its
  // listening socket only after its connections (and after tearing down its
  // memory, which takes a while for a large one).
  suspects_[routing_id] = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                    std::min(config_.cluster.heartbeat_timeout, 5.0)));
  ProbeSuspects(now);
}

void JobCoordinator::ProbeSuspects(Clock::time_point now) {
  for (auto it = suspects_.begin(); it != suspects_.end();) {
    Membership::Node* node = members_.FindByRoutingId(it->first);
    // Servers listen on their data port, workers on their metrics port (if
    // served). A port that refuses connections has no process behind it;
    // one that accepts leaves the node to its heartbeats.
    const uint32_t port = node == nullptr ? 0
                          : node->info.role() == pb::SERVER ? node->info.data_port()
                                                            : node->info.metrics_port();
    if (node == nullptr || node->dead || port == 0 || phase_ == Phase::kRegistering || now > it->second) {
      if (node != nullptr && !node->dead && now > it->second) {
        spdlog::info("{}'s connection closed, but its port still answers: left to its heartbeats",
                     DescribeNode(node->info));
      }
      it = suspects_.erase(it);
      continue;
    }
    constexpr int kProbeMs = 20;
    if (ProbePort(node->info.host(), port, kProbeMs) != ProbeResult::kRefused) {
      ++it;
      continue;
    }
    it = suspects_.erase(it);
    const std::string why = "is gone: its connection closed and its port refuses connections";
    if (node->info.role() == pb::SERVER) {
      OnServerLost(node, why);
    } else if (node->info.role() == pb::SERVING) {
      OnFrontEndLost(node, why);
    } else {
      OnWorkerLost(node, why);
    }
    if (phase_ == Phase::kDone) return;
  }
}

void JobCoordinator::Fail(const std::string& reason) {
  spdlog::error("job failed: {}", reason);
  outcome_ = absl::UnavailableError(reason);
  pb::Header abort;
  abort.set_type(pb::ABORT);
  abort.set_error(reason);
  Broadcast(abort);
  phase_ = Phase::kDone;
  state_changed_ = true;
  SaveState(Clock::now());
}

JobCoordinator::Outgoing JobCoordinator::Addressed(const std::string& routing_id, pb::Header h) const {
  h.set_sender(0);
  h.set_epoch(epoch_);
  return {routing_id, std::move(h)};
}

void JobCoordinator::SendTo(const std::string& routing_id, pb::Header h) {
  outbox_.push_back(Addressed(routing_id, std::move(h)));
}

std::vector<JobCoordinator::Outgoing> JobCoordinator::TakeOutbox() {
  std::vector<Outgoing> out;
  out.swap(outbox_);
  return out;
}

std::vector<std::string> JobCoordinator::LiveRoutingIds() const {
  std::vector<std::string> ids;
  for (const auto& node : members_.nodes()) {
    if (!node.dead) ids.push_back(node.routing_id);
  }
  return ids;
}

void JobCoordinator::SendOnceSaved(const std::string& routing_id, pb::Header h) {
  if (state_store_ == nullptr) return SendTo(routing_id, std::move(h));
  unsaved_sends_.push_back(Addressed(routing_id, std::move(h)));
  state_changed_ = true;
}

void JobCoordinator::OnVersionStaged(const Membership::Node& node, uint64_t version, const pb::Header* failure) {
  if (failure != nullptr) return follower_->OnFailed(node.info.id(), version, failure->error());
  follower_->OnStaged(node.info.id(), version);
  std::vector<uint32_t> live;
  for (const auto& n : members_.nodes()) {
    if (!n.dead && n.info.role() == pb::SERVER) live.push_back(n.info.id());
  }
  if (!follower_->MaybeAnnounce(live)) return;
  // New front-ends learn it from the view they are sent; these at once.
  view_.set_model_version(follower_->announced());
  const pb::Header news = follower_->AnnounceMessage();
  Broadcast(news, pb::SERVER);
  Broadcast(news, pb::SERVING);
}

void JobCoordinator::PollVersions(Clock::time_point now) {
  if (follower_ == nullptr || phase_ != Phase::kRunning) return;
  if (follower_->Poll(now)) Broadcast(follower_->StageMessage(), pb::SERVER);
}

void JobCoordinator::AddVersionNews(const Membership::Node& node, pb::Header* echo) const {
  echo->set_model_version(follower_->announced());
  if (node.info.role() == pb::SERVER && !follower_->excluded(node.info.id()) &&
      follower_->Behind(node.stats.staged_version())) {
    *echo->mutable_checkpoint() = follower_->StageMessage().checkpoint();
  }
}

void JobCoordinator::Broadcast(const pb::Header& h, pb::Role only) {
  for (const auto& node : members_.nodes()) {
    if (!node.dead && (only == pb::ROLE_UNKNOWN || node.info.role() == only)) SendTo(node.routing_id, h);
  }
}

void JobCoordinator::Reply(const std::string& routing_id, pb::MsgType type, const absl::Status& status) {
  pb::Header reply;
  reply.set_type(type);
  reply.set_status(static_cast<int32_t>(status.code()));
  reply.set_error(std::string(status.message()));
  SendTo(routing_id, std::move(reply));
}

void JobCoordinator::OnDrain(const std::string& routing_id, const pb::NodeInfo& who) {
  if (who.role() == pb::SERVER) return DrainServer(routing_id, who);
  absl::Status st;
  Membership::Node* node = nullptr;
  int staying = 0;  // live workers not draining, this one aside
  for (const auto& n : members_.nodes()) {
    if (n.info.role() == who.role() && n.info.rank() == who.rank() && !n.dead) {
      node = members_.FindByRoutingId(n.routing_id);
    } else if (n.info.role() == pb::WORKER && !n.dead && !draining_workers_.count(n.info.id())) {
      ++staying;
    }
  }
  if (who.role() != pb::WORKER) {
    st = absl::InvalidArgumentError("only workers and servers can be drained");
  } else if (!work_) {
    st = absl::FailedPreconditionError("draining a worker needs data.assignment: on_demand (with static, its slice "
                                       "of the input would go untrained)");
  } else if (phase_ != Phase::kRunning) {
    st = absl::FailedPreconditionError("the job is not running");
  } else if (node == nullptr) {
    st = absl::NotFoundError(absl::StrCat("no live worker-", who.rank()));
  } else if (staying == 0) {
    st = absl::FailedPreconditionError(
        absl::StrCat("worker-", who.rank(), " is the last worker not draining; someone must train the rest"));
  }
  if (!st.ok()) return Reply(routing_id, pb::RESPONSE, st);
  spdlog::info("draining {}: it finishes its work units, reports and leaves", DescribeNode(node->info));
  draining_workers_.insert(node->info.id());
  work_->Drain(node->info.id());
  SendWork();
  Reply(routing_id, pb::RESPONSE, absl::OkStatus());
}

void JobCoordinator::DrainServer(const std::string& routing_id, const pb::NodeInfo& who) {
  const absl::Status st = phase_ != Phase::kRunning ? absl::FailedPreconditionError("the job is not running")
                                                    : scaling_.Drain(who.rank(), epoch_ + 1);
  if (st.ok()) {
    state_changed_ = true;
    PublishView();
  }
  Reply(routing_id, pb::RESPONSE, st);
  if (st.ok()) AdvanceMoves();  // a server that holds nothing leaves at once
}

void JobCoordinator::OnScale(const std::string& routing_id, uint32_t wanted) {
  if (phase_ != Phase::kRunning) {
    return Reply(routing_id, pb::RESPONSE, absl::FailedPreconditionError("the job is not running"));
  }
  const ServerScaling::ScalePlan plan = scaling_.Scale(wanted, epoch_ + 1);
  if (plan.accepted) state_changed_ = true;
  if (plan.drains_begun > 0) PublishView();
  if (!plan.status.ok()) return Reply(routing_id, pb::RESPONSE, plan.status);
  pb::Header reply;
  reply.set_type(pb::RESPONSE);
  reply.set_error(plan.what);  // status 0: what happens next, for the operator
  // Servers to start: counted here, where draining ones are known not to stay.
  reply.set_scale_servers(plan.to_start);
  SendTo(routing_id, std::move(reply));
  AdvanceMoves();
}

void JobCoordinator::AdvanceMoves() {
  // A checkpoint's pause may wait on pushes parked for a hand-off, so moves
  // go on while workers pause; only the servers' cut needs the map still.
  if (checkpoints_.cutting()) return;
  const ServerScaling::Advanced advanced = scaling_.AdvanceMoves(epoch_ + 1);
  // Drained servers that hold no copy any more are let go: off the view,
  // then told to exit (they are not lost: nothing fails over).
  for (const std::string& routing_id : advanced.leaving) {
    members_.FindByRoutingId(routing_id)->dead = true;
    pb::Header shutdown;
    shutdown.set_type(pb::SHUTDOWN);
    SendTo(routing_id, std::move(shutdown));
  }
  if (advanced.switched > 0 || !advanced.leaving.empty()) {
    state_changed_ = true;
    PublishView();
  }
}

void JobCoordinator::OnWorkerLeft(Membership::Node* node) {
  spdlog::info("{} was drained and leaves the job", DescribeNode(node->info));
  node->dead = true;
  state_changed_ = true;
  pb::Header shutdown;
  shutdown.set_type(pb::SHUTDOWN);
  SendTo(node->routing_id, std::move(shutdown));
  AfterWorkerGone(*node);
}

void JobCoordinator::OnStop(const std::string& routing_id) {
  if (phase_ != Phase::kRunning || stopped_) {
    return Reply(routing_id, pb::RESPONSE,
                 absl::FailedPreconditionError(stopped_ ? "already stopping" : "the job is not running"));
  }
  stopped_ = true;
  Reply(routing_id, pb::RESPONSE, absl::OkStatus());
  // Workers stop where they are; what they trained is kept when there is
  // somewhere to keep it, so that storage.restore: latest goes on from here.
  auto shut_down = [this] { ShutDown("stopping the job as requested"); };
  spdlog::warn("stop requested{}", checkpoints_.enabled() ? ": checkpointing first" : "");
  if (checkpoints_.enabled()) {
    checkpoints_.Start("stop requested", shut_down);
  } else {
    shut_down();
  }
}

void JobCoordinator::OnPreempt(const std::string& who, Clock::time_point now) {
  if (preempt_deadline_ || phase_ == Phase::kDone) return;
  // A quarter of the grace is left for the daemons to exit after the end.
  preempt_deadline_ = now + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(0.75 * config_.cluster.shutdown_grace));
  if (phase_ == Phase::kFlushing || stopped_) {
    spdlog::warn("{} while the job is ending; finishing that within cluster.shutdown_grace", who);
    return;
  }
  if (config_.serving.cluster) {
    stopped_ = true;
    return ShutDown(absl::StrCat(who, ": the serving cluster stops"));
  }
  preempted_ = true;
  state_changed_ = true;
  if (phase_ == Phase::kRegistering) return ShutDown(absl::StrCat("preempted (", who, ") before the job started"));
  stopped_ = true;
  spdlog::warn("preempted ({}): {}", who,
               checkpoints_.enabled() ? "taking a final checkpoint, then ending the job"
                                      : "ending the job (no storage.path: nothing is saved)");
  auto shut_down = [this] { ShutDown("preempted: the job is saved and ends; resume with storage.restore=latest"); };
  if (checkpoints_.enabled()) {
    checkpoints_.Start("preempted", shut_down);
  } else {
    ShutDown("preempted: the job ends");
  }
}

}  // namespace sparta
