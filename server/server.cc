#include "server/server.h"
#include "server/memory_budget.h"
#include "server/view_change.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <bit>
#include <cstring>
#include <mutex>

#include "common/logging.h"

#include "absl/strings/str_cat.h"
#include "common/checkpoint_files.h"
#include "common/daemon_options.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/scheduler_client.h"
#include "common/socket_util.h"

namespace sparta {

// A pull's reply is allocated before it is filled; bound it so that no
// request can make the server allocate without limit.

namespace {
// Whose update a push is: a forwarded push is the worker's push, so
// duplicates are recognized whether it arrives directly or forwarded.
uint64_t ResidentBytes() {
  long pages = 0, resident = 0;
  if (std::ifstream statm("/proc/self/statm"); statm >> pages >> resident) {
    return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  }
  return 0;
}

// The process's peak resident memory (VmHWM), what server.memory_limit is
// checked against.
uint64_t PeakResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) << 10;  // kB
  }
  return 0;
}

}  // namespace

Server::Server(const Config& config, int rank, std::string info_file, bool join)
    : config_(config),
      requested_rank_(rank),
      join_(join),
      info_file_(std::move(info_file)),
      context_(1),
      socket_(context_, zmq::socket_type::router),
      tables_(&config_) {}

Server::~Server() {
  for (auto& e : executors_) e->Stop();
}

absl::Status Server::Run() {
  if (config_.server.memory_limit_bytes != 0) {
    // glibc gives each thread that allocates its own arena (up to 8 per
    // core), and freed memory stays in them: with executors, readers and
    // RocksDB's threads, that multiplied what the limit bounds. And a fixed
    // mmap threshold: by default it rises to the largest block freed, after
    // which request-sized buffers (MBs) come from the heap and their memory
    // is not given back. Before any thread starts.
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
  }
  ConfigureSocket(socket_);
  socket_.set(zmq::sockopt::router_mandatory, 1);
  zap_ = ZapAuthenticator::Start(&context_, config_.cluster);
  SecureServerSocket(socket_, config_.cluster);
  auto port = BindTcp(socket_, config_.cluster.host, 0);
  if (!port.ok()) return port.status();
  if (auto st = metrics_.Start(config_, config_.cluster.host); !st.ok()) return st;

  pb::NodeInfo self;
  self.set_role(pb::SERVER);
  self.set_rank(requested_rank_);
  self.set_join(join_);
  self.set_host(config_.cluster.host);
  self.set_data_port(*port);
  self.set_locality(LocalityId());
  if (config_.cluster.local_transport_mode == LocalTransport::kIpc) {
    // Peers on this host skip TCP (cluster.local_transport); the socket's
    // CurveZMQ and ZAP settings cover this endpoint too.
    auto ipc = IpcEndpoint::Bind(socket_, *port);
    if (!ipc.ok()) return ipc.status();
    ipc_ = *std::move(ipc);
    self.set_ipc_endpoint(ipc_->endpoint());
  }
  self.set_pid(getpid());
  self.set_metrics_port(metrics_.port());
  SchedulerClient client(&context_, config_, self,
                         // The executors belong to the main loop: FLUSH is answered there.
                         {.on_flush = [&] {
                            pb::Header flush;
                            flush.set_type(pb::FLUSH);
                            control_.Post(flush);
                          },
                          .on_end = [&](const absl::Status&) { done_.Wake(); },
                          .on_control = [&](const pb::Header& h) { control_.Post(h); },
                          .on_heartbeat = [&](pb::Header* h) { FillHeartbeat(h); }});
  scheduler_ = &client;
  if (auto st = client.Register(); !st.ok()) return st;
  rank_ = client.self().rank();
  SetLogProcessName(absl::StrCat("server-", rank_));
  metrics_.SetIdentity("server", rank_);
  if (!config_.storage.path.empty()) {
    const std::string dir =
        ServerStoreDir(config_.storage.db_path.empty() ? config_.storage.path : config_.storage.db_path, rank_);
    auto store = RowStore::Open(dir, config_.storage.durability_mode == Durability::kWal, /*fresh=*/true, ColdTierBytes(config_));
    if (!store.ok()) return store.status();
    store_ = *std::move(store);
    spdlog::info("rows persist to {} (durability: {})", dir, config_.storage.durability);
  }
  WriteInfoFile(info_file_, client.self());
  spdlog::info("serving on {}:{}{} as id {}", config_.cluster.host, *port,
               self.ipc_endpoint().empty() ? "" : " and " + self.ipc_endpoint(), client.self().id());

  auto view = client.WaitForView();
  if (!view.ok()) return view.status();
  replicator_ = std::make_unique<Replicator>(&context_, config_.cluster, client.self().id(), rank_, config_.storage.ack_mode == AckMode::kAll);
  num_shards_ = view->shard_owner_size();
  shard_applied_ = std::make_unique<std::atomic<uint64_t>[]>(num_shards_);
  published_shard_rows_ = std::make_unique<std::atomic<uint64_t>[]>(num_shards_);
  incomplete_ = std::make_unique<std::atomic<bool>[]>(num_shards_);
  router_ = std::make_unique<RequestRouter>(config_.server.threads, num_shards_, config_.serving.cluster);
  updates_in_flight_.assign(num_shards_, 0);
  AdoptView(*view);
  // A server that joins a running job holds none of its replicas' rows yet.
  if (view->running()) {
    for (uint32_t s = 0; s < num_shards_; ++s) incomplete_[s].store(IsReplicaOf(s));
  }
  view_epoch_.store(epoch_);
  if (config_.serving.cluster) {
    stager_ = std::make_unique<VersionStager>(view->restore_version(), [this] {
      pb::Header staged;
      staged.set_type(pb::VERSION_STAGED);
      control_.Post(staged);
    });
    announced_version_.store(view->model_version() != 0 ? view->model_version() : view->restore_version());
  }
  shards_ready_.store(true, std::memory_order_release);
  const int threads = config_.server.threads;
  auto budget = HotRowBudget(config_);
  if (!budget.ok()) return budget.status();
  ShardExecutor::Options options{
      .store = store_.get(),
      .wal = config_.storage.durability_mode == Durability::kWal,
      .sum_steps = config_.worker.consistency_mode == Consistency::kBsp,
      .memory_budget = *budget / static_cast<uint64_t>(threads),
      // Each table's admission counters: counter_bytes on this server,
      // spread over the shards it holds (num_shards x R / servers).
      .counter_share = static_cast<double>(config_.cluster.servers) /
                       (static_cast<double>(num_shards_) * config_.storage.replication_factor),
      .log_changes = config_.serving.publish_every_seconds > 0,
      .read_only = config_.serving.cluster};
  if (*budget != 0) {
    spdlog::info("server.memory_limit {}: {} MiB for hot rows, {} MiB for RocksDB's cache and memtables; "
                 "colder rows live in {}",
                 config_.server.memory_limit, *budget >> 20, ColdTierBytes(config_) >> 20,
                 config_.storage.db_path.empty() ? config_.storage.path : config_.storage.db_path);
  }
  for (int e = 0; e < threads; ++e) {
    executors_.push_back(std::make_unique<ShardExecutor>(e, threads, shards_.num_shards(), &done_, options));
  }
  if (!view->restore_from().empty()) {
    uint64_t step = 0;  // the checkpoint's furthest worker step
    for (uint64_t s : view->worker_steps()) step = std::max(step, s);
    if (auto st = RestoreCheckpointPart(view->restore_from(), shards_, static_cast<uint32_t>(rank_),
                                        config_.storage.durability_mode == Durability::kWal, step, &tables_,
                                        store_.get(), executors_);
        !st.ok()) {
      client.SendFailed(st);  // ends the job at once, with the reason
      return st;
    }
  }
  streamer_ = std::make_unique<ShardStreamer>(store_.get(), &snapshots_, config_.server.stream_rate_bytes);
  for (auto& e : executors_) e->Start();
  int owned = 0, replicated = 0;
  for (uint32_t s = 0; s < shards_.num_shards(); ++s) {
    owned += shards_.owner(s) == static_cast<uint32_t>(rank_);
    replicated += IsReplicaOf(s);
  }
  spdlog::info("cluster view epoch {}: this server leads {} and replicates {} of {} shards; {} executor threads",
               epoch_, owned, replicated, shards_.num_shards(), threads);

  std::deque<std::shared_ptr<Request>> finished;
  while (!client.ended()) {
    std::vector<zmq::pollitem_t> items = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                                          {nullptr, done_.fd(), ZMQ_POLLIN, 0},
                                          {nullptr, control_.fd(), ZMQ_POLLIN, 0},
                                          {nullptr, snapshots_.fd(), ZMQ_POLLIN, 0}};
    replicator_->AddPollItems(&items);
    WaitForInput(&items, std::chrono::milliseconds(200));
    if (items[2].revents & ZMQ_POLLIN) {
      std::deque<pb::Header> control;
      control_.Drain(&control);
      for (const auto& h : control) HandleControl(h);
      if (!fatal_.ok()) break;
    }
    if (items[3].revents & ZMQ_POLLIN) SendSnapshots();
    ReportWholeShards();
    // Also for updates acknowledged before they are logged (bsp step sums).
    if (store_ != nullptr && !storage_failed_ && store_->wal_failed()) (void)ReportStorageFailure();
    if (metrics_.PublishDue()) PublishMetrics();
    replicator_->ReceiveAcks(on_replica_ack_, [this](const pb::Header& ack) {
      const absl::Status st(static_cast<absl::StatusCode>(ack.status()), ack.error());
      if (!st.ok() && st.code() != absl::StatusCode::kAborted) {
        spdlog::warn("a new replica could not load a part of shard {}: {}", ack.shard(), st.message());
      }
      streamer_->Acknowledged(ack.seq(), st);
    });
    if (!snapshot_retries_.empty()) RetrySnapshots();
    if (items[1].revents & ZMQ_POLLIN) {
      done_.Drain(&finished);
      for (auto& r : finished) OnApplied(r);
      finished.clear();
    }
    // Bounded so that replies are not starved by a flood of requests.
    for (int i = 0; i < 256; ++i) {
      auto got = ReceiveMessage(socket_, /*from_router=*/true);
      if (!got.ok()) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("dropped a message: {}", got.status().message());
        continue;
      }
      if (!got->has_value()) break;
      HandleRequest(std::move(**got));
    }
  }
  for (auto& e : executors_) e->Stop();
  if (const ShardStreamer::Totals sent = streamer_->totals(); sent.parts > 0) {
    spdlog::info("shards sent to new replicas: {} KiB in {} parts, at most {} KiB unacknowledged; at most {} KiB of "
                 "forwards held back for them",
                 sent.bytes >> 10, sent.parts, sent.peak_unacknowledged_bytes >> 10,
                 replicator_->peak_held_bytes() >> 10);
  }
  streamer_.reset();  // holds a snapshot of the store
  if (!fatal_.ok()) return fatal_;
  const pb::ServerStats stats = Stats();
  PublishMetrics();
  for (const pb::TableTier& t : tier_.tables()) {
    if (t.demoted() + t.admitted() + t.deferred() + t.expired() == 0) continue;
    spdlog::info("table '{}': {} hot + {} cold rows; {} demoted, {} promoted; {} cold reads in {} batches, {:.3f} s; "
                 "{} admitted, {} occurrences not admitted; {} expired; {} cold reads made while their request waited",
                 t.table(), t.hot_rows(), t.cold_rows(), t.demoted(), t.promoted(), t.cold_reads(),
                 t.cold_read_batches(), t.cold_read_seconds(), t.admitted(), t.deferred(), t.expired(),
                 t.cold_reads_ahead());
  }
  spdlog::info("stopping: {} rows, {} pulls, {} pushes, {} malformed messages dropped; peak resident memory {} MiB",
               stats.rows(), stats.pull_requests(), stats.push_requests(), stats.dropped_messages(),
               PeakResidentBytes() >> 20);
  return client.WaitForEnd();
}

void Server::HandleRequest(Message message) {
  const pb::Header& h = message.header;
  if ((h.type() == pb::REPLICATE || h.type() == pb::SHARD_SNAPSHOT) && h.epoch() > epoch_) {
    // A peer acts on a view this server has not adopted yet (views reach
    // servers a moment apart): judged now, a forward for a shard this
    // server is about to replicate would be refused, and its push, already
    // applied by the primary, never resent here; a snapshot would be loaded
    // before the view marks the shard as awaited. Taken, in arrival order,
    // once the view is here.
    ahead_.push_back(std::move(message));
    return;
  }
  TrafficCounters::Add(traffic_.bytes_in, TrafficCounters::FrameBytes(message.frames));
  switch (h.type()) {
    case pb::CREATE_TABLE: {
      absl::Status st = tables_.Create(h.table_spec());
      if (st.ok() && store_ != nullptr) st = store_->AddTable(h.table_spec().id());
      if (st.ok()) spdlog::debug("table {} '{}' ready", h.table_spec().id(), h.table_spec().name());
      return Reply(message, st);
    }
    case pb::PULL:
    case pb::PUSH:
    case pb::REPLICATE:
      break;
    case pb::SHARD_SNAPSHOT:
      return LoadSnapshot(std::move(message));
    default:
      dropped_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("dropped unexpected {} from sender {}", MsgTypeName(h.type()), h.sender());
      return;
  }
  const RequestRouter::Admission admission = router_->Admit(h, epoch_, tables_);
  if (admission.verdict == RequestRouter::Verdict::kRefuse) return Reply(message, admission.refusal);
  // A serving cluster's pull reads the version it names, whole.
  std::vector<std::shared_ptr<const VersionOverlay>> overlays;
  if (stager_ != nullptr && h.type() == pb::PULL) {
    auto read = stager_->versions().For(h.model_version());
    if (!read.ok()) return Reply(message, read.status());
    overlays = *std::move(read);
  }
  const TableEntry* table = admission.table;
  // Rows remember when they were updated (embedding.eviction.ttl): by this
  // primary's clock, which the forwards carry to the replicas.
  if (h.type() == pb::PUSH && table->policy.ttl_seconds > 0) {
    message.header.set_apply_time(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  }
  auto request = std::make_shared<Request>();
  request->table = table;
  request->message = std::move(message);
  request->overlays = std::move(overlays);
  const Message& m = request->message;
  request->keys = FrameView<uint64_t>(m.frames[0], &request->key_scratch);
  request->dtype = m.header.dtype();
  const size_t floats = request->keys.size() * size_t{table->spec.dim()};
  if (m.header.type() != pb::PULL) {
    if (request->dtype == pb::FP16) {
      request->grads_half = FrameView<uint16_t>(m.frames[1], &request->half_scratch);
    } else {
      request->grads = FrameView<float>(m.frames[1], &request->grad_scratch);
    }
    if (m.header.key_counts()) request->counts = FrameView<uint32_t>(m.frames[2], &request->count_scratch);
  } else if (request->dtype == pb::FP16) {
    request->half_values.resize(floats);
  } else {
    request->values.resize(floats);
  }
  Route(std::move(request));
}

void Server::Route(std::shared_ptr<Request> request) {
  const pb::Header& h = request->message.header;
  std::vector<ShardTask> tasks;
  std::vector<uint32_t> updated;  // shards this update counts for, once each
  bool skipped = false;           // shards it was applied to before (a resend)
  if (auto st = router_->Plan(h, request->keys, shards_, static_cast<uint32_t>(rank_), duplicates_, &tasks,
                              &updated, &skipped);
      !st.ok()) {
    // A shard being handed off: the request waits for the view that
    // switches its primary (the pause a move costs).
    if (absl::IsUnavailable(st)) return parked_.push_back(std::move(request));
    // Nothing is applied, counted or recorded: the sender resends it to
    // the shard's server once it has the current view.
    return Reply(request->message, st);
  }
  if (h.type() != pb::PULL) {
    if (skipped) spdlog::debug("push {} from sender {} was applied to some of its shards before", h.seq(), OriginOf(h));
    for (uint32_t shard : updated) {
      duplicates_.Record(shard, OriginOf(h), h.seq());
      shard_applied_[shard].fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (h.type() == pb::PUSH && !updated.empty()) {
    // Replicas get only what is applied here now: a shard's copy that came
    // in a snapshot holds earlier pushes without a record of them.
    request->acks_pending = replicator_->Forward(request, epoch_, skipped ? &updated : nullptr);
    for (uint32_t shard : updated) ++updates_in_flight_[shard];
    request->in_flight_shards = std::move(updated);
  }
  int busy = 0, only = -1;
  for (size_t e = 0; e < tasks.size(); ++e) {
    if (tasks[e].positions.empty()) continue;
    ++busy;
    only = static_cast<int>(e);
  }
  if (busy == 0) return OnApplied(request);
  request->pending.store(busy, std::memory_order_relaxed);
  // A small request for one idle executor runs here: two thread hand-offs
  // fewer on its way to the reply. A large one goes to the executor, so
  // that this thread goes on receiving.
  if (busy == 1 && tasks[only].positions.size() * size_t{request->table->spec.dim()} <= kRunHereFloats) {
    tasks[only].request = request;
    bool finished = false;
    if (executors_[only]->TryRunHere(tasks[only], &finished)) {
      if (finished) OnApplied(request);
      return;
    }
  }
  for (size_t e = 0; e < tasks.size(); ++e) {
    if (tasks[e].positions.empty()) continue;
    tasks[e].request = request;
    executors_[e]->Submit(std::move(tasks[e]));
  }
}

void Server::Answer(const std::shared_ptr<Request>& request) {
  if (request->message.header.type() == pb::SHARD_SNAPSHOT) {
    AckSnapshot(request->message, absl::OkStatus());
  } else if (request->read_failed.load()) {
    Reply(request->message, ReportTierFailure());
  } else if (request->message.header.type() == pb::PULL) {
    TrafficCounters::Add(traffic_.pulls, 1);
    TrafficCounters::Add(traffic_.pulled_keys, request->message.header.num_keys());
    if (request->dtype == pb::FP16) {
      Reply(request->message, absl::OkStatus(), nullptr, request->table->spec.dim(), &request->half_values);
    } else {
      Reply(request->message, absl::OkStatus(), &request->values, request->table->spec.dim());
    }
  } else if (!request->replica_error.ok()) {
    Reply(request->message, request->replica_error);
  } else if (request->not_durable.load()) {
    Reply(request->message, ReportStorageFailure());
  } else {
    TrafficCounters::Add(traffic_.pushes, 1);
    TrafficCounters::Add(traffic_.pushed_keys, request->message.header.num_keys());
    Reply(request->message, absl::OkStatus());
  }
  if (!request->in_flight_shards.empty()) SettleInFlight(*request);
}

void Server::SettleInFlight(const Request& request) {
  bool handed_off = false;
  for (uint32_t shard : request.in_flight_shards) {
    handed_off |= --updates_in_flight_[shard] == 0 && shards_.handing_off(shard);
  }
  if (handed_off) ReportHandoffs();
}

void Server::ReportHandoffs() {
  pb::Header h;
  h.set_type(pb::SHARDS_HANDED_OFF);
  auto* stats = h.mutable_server_stats();
  stats->set_view_epoch(epoch_);
  std::erase_if(handoffs_unreported_, [&](uint32_t shard) {
    if (updates_in_flight_[shard] != 0) return false;
    stats->add_handed_off(shard);
    return true;
  });
  if (stats->handed_off_size() == 0) return;
  spdlog::info("handed off {} shards at epoch {}: every update admitted for them is applied on every copy",
               stats->handed_off_size(), epoch_);
  scheduler_->Send(std::move(h));
}

void Server::ReleaseParked() {
  // Nothing of them was applied: their workers resend them under the new
  // view, to the shard's new primary (or here again if it still hands off).
  std::vector<std::shared_ptr<Request>> parked;
  parked.swap(parked_);
  for (const auto& request : parked) {
    Reply(request->message, absl::AbortedError(absl::StrCat("held back while its shard was handed off; the cluster "
                                                            "is at epoch ", epoch_)));
  }
}

absl::Status Server::ReportTierFailure() {
  absl::Status cause;
  for (const auto& e : executors_) {
    if (e->failed()) cause = e->failure();
  }
  const absl::Status why = absl::DataLossError(
      absl::StrCat("server-", rank_, " lost access to its cold tier (server.memory_limit): ", cause.message()));
  if (!storage_failed_) {
    storage_failed_ = true;
    scheduler_->SendFailed(why);
  }
  return why;
}

absl::Status Server::ReportStorageFailure() {
  // The job cannot keep its durability promise: it fails, saying why.
  const absl::Status why = absl::DataLossError(absl::StrCat(
      "server-", rank_, " could not log an update (storage.durability: wal): ", store_->wal_error().message()));
  if (!storage_failed_) {
    storage_failed_ = true;
    scheduler_->SendFailed(why);
  }
  return why;
}

void Server::OnApplied(const std::shared_ptr<Request>& request) {
  request->applied = true;
  if (request->acks_pending == 0) Answer(request);
}

void Server::OnReplicaAck(const std::shared_ptr<Request>& request, const absl::Status& status) {
  if (!status.ok() && request->replica_error.ok()) {
    // Most likely this server is a stale primary: the worker must resend to
    // the shard's current primary.
    spdlog::warn("push {} from sender {}: {}", request->message.header.seq(), request->message.header.sender(),
                 status.message());
    request->replica_error = absl::AbortedError(std::string(status.message()));
  }
  if (--request->acks_pending == 0 && request->applied) Answer(request);
}

bool Server::IsReplicaOf(uint32_t shard) const { return shards_.IsReplica(shard, static_cast<uint32_t>(rank_)); }

void Server::AdoptView(const pb::ClusterView& view) {
  shards_ = ShardView(view);
  epoch_ = shards_.epoch();
  std::vector<pb::TableSpec> tables;
  for (const TableEntry* t : tables_.All()) tables.push_back(t->spec);
  replicator_->UpdateView(view, on_replica_ack_, tables);
}

void Server::OnNewView(const pb::ClusterView& view) {
  const uint32_t me = static_cast<uint32_t>(rank_);
  const ViewChange change = PlanViewChange(shards_, view, me);
  if (!change.listed) {
    fatal_ = absl::AbortedError(absl::StrCat("cluster view epoch ", view.epoch(), " no longer lists this server"));
    return;
  }
  AdoptView(view);
  ReleaseParked();
  handoffs_unreported_.clear();
  for (uint32_t shard = 0; shard < num_shards_; ++shard) {
    if (shards_.handing_off(shard) && shards_.owner(shard) == me) handoffs_unreported_.push_back(shard);
  }
  ReportHandoffs();
  streamer_->Cancel([&](uint32_t peer, uint32_t shard) { return !StreamStillWanted(shards_, me, peer, shard); });
  snapshot_queue_.insert(snapshot_queue_.end(), change.snapshots.begin(), change.snapshots.end());
  StartSnapshots();
  for (uint32_t shard : change.dropped) {
    // In order behind every request for it that was routed here before.
    ShardTask task;
    task.control = [this, shard] {
      if (auto st = executors_[shard % executors_.size()]->DropShard(shard); !st.ok()) {
        spdlog::error("dropping the rows of shard {}, which moved away: {}", shard, st.message());
      }
    };
    executors_[shard % executors_.size()]->Submit(std::move(task));
  }
  if (!change.dropped.empty()) {
    spdlog::info("cluster view epoch {}: {} shards moved away; their rows here are dropped", epoch_,
                 change.dropped.size());
  }
  // Set before the heartbeats report the view.
  for (uint32_t shard : change.incomplete) incomplete_[shard].store(true);
  view_epoch_.store(epoch_);
  spdlog::info("cluster view epoch {}: now leading {} more shards", epoch_, change.promoted);
  std::deque<Message> ahead;
  ahead.swap(ahead_);
  for (Message& message : ahead) HandleRequest(std::move(message));  // newer ones wait again, in order
}

void Server::StartSnapshots() {
  const uint32_t me = static_cast<uint32_t>(rank_);
  while (snapshots_running_ < kConcurrentSnapshots && !snapshot_queue_.empty()) {
    const auto [shard, peer] = snapshot_queue_.front();
    snapshot_queue_.pop_front();
    if (!StreamStillWanted(shards_, me, peer, shard)) continue;
    SnapshotShard(shard, peer);
  }
}

std::vector<uint64_t> Server::TakeStreamRecords(uint32_t peer, uint32_t shard) {
  std::vector<uint64_t> records;
  auto it = stream_records_.find({peer, shard});
  if (it == stream_records_.end()) return records;
  records = std::move(it->second.front());
  it->second.pop_front();
  if (it->second.empty()) stream_records_.erase(it);
  return records;
}

void Server::EndStream(uint32_t peer, uint32_t shard) {
  replicator_->SnapshotDone(peer, shard, on_replica_ack_);
  --snapshots_running_;
  StartSnapshots();  // only queues cuts: nothing reaches the socket before the caller's own sends
}

void Server::SnapshotShard(uint32_t shard, uint32_t peer) {
  ++snapshots_running_;
  replicator_->HoldForSnapshot(peer, shard);
  // The pushes recorded so far are exactly those the cut holds: each was
  // routed to the executor ahead of it.
  stream_records_[{peer, shard}].push_back(duplicates_.CopyShard(shard));
  // The cut runs on the shard's executor, in order with the pushes routed
  // before now, whose forwards went out as they came; those routed from now
  // on wait in the replicator until the stream ends. The rows then stream
  // from the cut in bounded parts (server/shard_streamer.h).
  const size_t threads = executors_.size();
  ShardExecutor* executor = executors_[shard % threads].get();
  std::vector<const TableEntry*> tables = tables_.All();
  ShardTask task;
  task.control = [this, executor, shard, peer, tables] {
    ShardCut cut;
    cut.peer = peer;
    cut.shard = shard;
    if (auto st = executor->CutShard(tables, ShardStreamer::kChunkBytes, &cut); !st.ok()) {
      spdlog::error("shard {} not sent to server-{}: {}", shard, peer, st.message());
      SnapshotChunk end;
      end.kind = SnapshotChunk::Kind::kFailed;
      end.peer = peer;
      end.shard = shard;
      snapshots_.Post(std::move(end));
      return;
    }
    streamer_->Stream(std::move(cut));
  };
  executor->Submit(std::move(task));
}

void Server::SendSnapshots() {
  std::deque<SnapshotChunk> ready;
  snapshots_.Drain(&ready);
  for (SnapshotChunk& chunk : ready) {
    pb::Header h;
    h.set_type(pb::SHARD_SNAPSHOT);
    h.set_epoch(epoch_);
    h.set_shard(chunk.shard);
    h.set_seq(chunk.stream);
    std::vector<zmq::message_t> frames(2);
    switch (chunk.kind) {
      case SnapshotChunk::Kind::kCancelled:
        // The replica no longer takes this shard from here: what was held
        // back for it goes on.
        spdlog::warn("stopped streaming shard {} to server-{}", chunk.shard, chunk.peer);
        TakeStreamRecords(chunk.peer, chunk.shard);
        EndStream(chunk.peer, chunk.shard);
        continue;
      case SnapshotChunk::Kind::kFailed: {
        // What was held back goes on (the next try's cut includes it), and
        // the shard goes again later: else the replica would wait for good.
        TakeStreamRecords(chunk.peer, chunk.shard);
        EndStream(chunk.peer, chunk.shard);
        const auto delay = snapshot_retries_.Failed(chunk.shard, chunk.peer, SnapshotRetries::Clock::now());
        spdlog::warn("streaming shard {} to server-{} failed; trying again in {} s", chunk.shard, chunk.peer,
                     std::chrono::duration_cast<std::chrono::seconds>(delay).count());
        continue;
      }
      case SnapshotChunk::Kind::kEnd:
        // The forwards held back for the shard go first, then the mark: the
        // replica applies them behind the rows and before it counts the
        // shard whole, so a whole copy lacks none of them (pushes did not
        // wait for them: see Replicator).
        // The mark carries the cut's duplicate records (a third frame).
        frames.push_back(FrameFromVector(TakeStreamRecords(chunk.peer, chunk.shard)));
        EndStream(chunk.peer, chunk.shard);
        h.set_last(true);
        h.set_dim(1);
        replicator_->SendSnapshot(chunk.peer, std::move(h), std::move(frames));
        snapshot_retries_.Succeeded(chunk.shard, chunk.peer);
        continue;
      case SnapshotChunk::Kind::kAdmission:
        h.set_dim(1);
        h.set_admission_sketch(true);
        frames.push_back(FrameFromVector(std::move(chunk.admission)));
        break;
      case SnapshotChunk::Kind::kRows:
        h.set_num_keys(static_cast<uint32_t>(chunk.keys.size()));
        h.set_dim(chunk.record);
        frames[0] = FrameFromVector(std::move(chunk.keys));
        frames[1] = FrameFromVector(std::move(chunk.rows));
        break;
    }
    h.set_table(chunk.table->spec.id());
    *h.mutable_table_spec() = chunk.table->spec;
    replicator_->SendSnapshot(chunk.peer, std::move(h), std::move(frames));
  }
}

void Server::RetrySnapshots() {
  const uint32_t me = static_cast<uint32_t>(rank_);
  for (const auto& [shard, peer] : snapshot_retries_.TakeDue(SnapshotRetries::Clock::now())) {
    // Only while the replica still takes the shard from here.
    if (shards_.owner(shard) != me || !shards_.IsReplica(shard, peer)) {
      snapshot_retries_.Succeeded(shard, peer);
      continue;
    }
    spdlog::info("streaming shard {} to server-{} again", shard, peer);
    SnapshotShard(shard, peer);
  }
}

void Server::LoadSnapshot(Message message) {
  const pb::Header& h = message.header;
  const uint32_t shard = h.shard();
  const RequestRouter::SnapshotAdmission admission =
      router_->AdmitSnapshot(h, epoch_, shard < num_shards_ && incomplete_[shard].load(), &tables_, store_.get());
  switch (admission.verdict) {
    case RequestRouter::SnapshotVerdict::kDrop:
      dropped_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("dropped a snapshot of shard {}, which does not exist", shard);
      return;
    case RequestRouter::SnapshotVerdict::kRefuse:
      if (admission.refusal.code() == absl::StatusCode::kAborted) dropped_.fetch_add(1, std::memory_order_relaxed);
      return AckSnapshot(message, admission.refusal);
    case RequestRouter::SnapshotVerdict::kWhole: {
      // The pushes the cut held are applied here now: a resend of one of
      // them is recognized (see DuplicateFilter).
      std::vector<uint64_t> scratch;
      if (message.frames.size() != 3 ||
          !duplicates_.MergeShard(shard, FrameView<uint64_t>(message.frames[2], &scratch))) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("shard {}: the end of its stream carries no valid duplicate records; resends of pushes its "
                     "cut held would be applied again",
                     shard);
      }
      // In order behind the shard's loads on its executor.
      ShardTask task;
      task.control = [this, shard] {
        executors_[shard % executors_.size()]->MarkReplaced(shard);
        incomplete_[shard].store(false);
        whole_news_.store(true, std::memory_order_release);
        spdlog::info("shard {} is whole here (new replica)", shard);
      };
      executors_[shard % executors_.size()]->Submit(std::move(task));
      return;
    }
    case RequestRouter::SnapshotVerdict::kRows:
    case RequestRouter::SnapshotVerdict::kAdmission:
      break;
  }
  ShardExecutor* executor = executors_[shard % executors_.size()].get();
  const TableEntry* table = admission.table;
  const uint32_t stride = admission.stride;
  spdlog::info("loading {} rows of table '{}' for shard {} (new replica)", h.num_keys(), table->spec.name(), shard);
  // Acknowledged once loaded: the primary sends more only then.
  auto part = std::make_shared<Request>();
  part->table = table;
  part->message = std::move(message);  // `h` is empty from here on
  ShardTask task;
  task.control = [this, part, executor, table, shard, stride] {
    const Message& m = part->message;
    if (m.header.admission_sketch()) {
      std::vector<uint8_t> scratch;
      if (!executor->LoadAdmission(*table, shard, FrameView<uint8_t>(m.frames[2], &scratch))) {
        spdlog::warn("shard {}: the primary's admission counters of table '{}' are not this server's size; "
                     "counting starts over here", shard, table->spec.name());
      }
    } else {
      std::vector<uint64_t> key_scratch;
      std::vector<float> row_scratch;
      const auto keys = FrameView<uint64_t>(m.frames[0], &key_scratch);
      const auto rows = FrameView<float>(m.frames[1], &row_scratch);
      for (size_t i = 0; i < keys.size(); ++i) executor->LoadRow(*table, shard, keys[i], rows.subspan(i * stride, stride));
    }
    done_.Post(part);
  };
  executor->Submit(std::move(task));
}

void Server::AckSnapshot(const Message& part, const absl::Status& status) {
  pb::Header h;
  h.set_type(pb::SHARD_SNAPSHOT_ACK);
  h.set_seq(part.header.seq());
  h.set_shard(part.header.shard());
  h.set_epoch(epoch_);
  h.set_status(static_cast<int32_t>(status.code()));
  if (!status.ok()) {
    h.set_error(std::string(status.message()));
    spdlog::warn("refused a snapshot of shard {}: {}", part.header.shard(), status.message());
  }
  std::vector<zmq::message_t> frames;
  if (auto st = SendMessage(socket_, h, &frames, &*part.routing_id); !st.ok()) {
    spdlog::debug("snapshot acknowledgement not sent: {}", st.message());
  }
}

void Server::PublishShardRows() {
  for (uint32_t s = 0; s < num_shards_; ++s) {
    published_shard_rows_[s].store(executors_[s % executors_.size()]->shard_rows(s), std::memory_order_relaxed);
  }
}

void Server::ReportWholeShards() {
  // A move advances on the scheduler's next look at this server: told now,
  // not at the next heartbeat, a drain or join ends sooner. At most every
  // 50 ms: shards that become whole together switch together (each switch
  // is two views and a short pause of the requests for those shards).
  if (!whole_news_.load(std::memory_order_acquire)) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_whole_report_ < std::chrono::milliseconds(50)) return;
  whole_news_.store(false, std::memory_order_relaxed);
  last_whole_report_ = now;
  PublishShardRows();  // the rows that came: a join balances by them
  pb::Header h;
  h.set_type(pb::HEARTBEAT);
  FillHeartbeat(&h);
  scheduler_->Send(std::move(h));
}

void Server::FillHeartbeat(pb::Header* h) {
  // Runs on the scheduler client's thread, which starts before the view
  // (and so the per-shard arrays) exists.
  if (!shards_ready_.load(std::memory_order_acquire)) return;
  auto* stats = h->mutable_server_stats();
  stats->set_rows(published_rows_.load(std::memory_order_relaxed));
  stats->set_pull_requests(traffic_.pulls.load(std::memory_order_relaxed));
  stats->set_push_requests(traffic_.pushes.load(std::memory_order_relaxed));
  stats->set_dropped_messages(dropped_.load(std::memory_order_relaxed));
  stats->set_view_epoch(view_epoch_.load());
  if (stager_ != nullptr) {
    stats->set_staged_version(stager_->staged_version());
    h->set_model_version(announced_version_.load());
  }
  {
    std::lock_guard<std::mutex> lock(tier_mu_);
    stats->set_memory_limit(tier_.memory_limit());
    stats->set_resident_bytes(tier_.resident_bytes());
    stats->set_disk_bytes(tier_.disk_bytes());
    *stats->mutable_tables() = tier_.tables();
  }
  for (uint32_t s = 0; s < num_shards_; ++s) {
    stats->add_shard_applied(shard_applied_[s].load());
    stats->add_shard_rows(published_shard_rows_[s].load(std::memory_order_relaxed));
    if (incomplete_[s].load()) stats->add_incomplete_shards(s);
  }
}

void Server::HandleControl(const pb::Header& h) {
  if (h.type() == pb::CLUSTER_VIEW) return OnNewView(h.view());
  if (h.type() == pb::STAGE_VERSION || h.type() == pb::VERSION_STAGED || h.type() == pb::MODEL_VERSION ||
      h.type() == pb::HEARTBEAT) {
    return OnVersionNews(h);
  }
  if (h.type() == pb::FLUSH) return scheduler_->SendFlushDone(Stats());
  if (h.type() != pb::CHECKPOINT) return;
  // The workers are paused: every executor's queue ends with the last push
  // of the cut.
  auto done = CutCheckpointPart(h.checkpoint(), rank_, store_.get(), tables_, executors_, shards_);
  pb::Header reply;
  reply.set_type(pb::CHECKPOINT_DONE);
  if (done.ok()) {
    *reply.mutable_checkpoint() = *done;
  } else {
    spdlog::error("checkpoint {} failed: {}", h.checkpoint().version(), done.status().message());
    reply.mutable_checkpoint()->set_version(h.checkpoint().version());
    reply.set_error(std::string(done.status().message()));
  }
  scheduler_->Send(std::move(reply));
}

void Server::OnVersionNews(const pb::Header& h) {
  if (stager_ == nullptr) return;
  std::optional<pb::Header> answer;
  if (h.type() == pb::VERSION_STAGED) {
    answer = stager_->Finish();
  } else if (h.has_checkpoint() && (!h.checkpoint().delta_dir().empty() || !h.checkpoint().dir().empty())) {
    // The rows of the shards this server holds now, primary or replica.
    std::vector<bool> held(num_shards_, false);
    for (uint32_t s = 0; s < num_shards_; ++s) held[s] = shards_.owner(s) == static_cast<uint32_t>(rank_) || IsReplicaOf(s);
    std::vector<uint32_t> dims;
    for (const TableEntry* table : tables_.All()) {
      if (dims.size() <= table->spec.id()) dims.resize(table->spec.id() + 1, 0);
      dims[table->spec.id()] = table->spec.dim();
    }
    answer = stager_->Start(
        h.checkpoint(), num_shards_, [held = std::move(held)](uint32_t s) { return s < held.size() && held[s]; },
        [dims = std::move(dims)](uint32_t id) { return id < dims.size() ? dims[id] : 0u; });
  }
  if (answer.has_value()) scheduler_->Send(*std::move(answer));
  if (h.model_version() != 0) FoldVersions(h.model_version());
}

void Server::FoldVersions(uint64_t announced) {
  if (announced <= announced_version_.load()) return;
  const auto fold = stager_->versions().Announce(announced);
  announced_version_.store(stager_->versions().announced());
  spdlog::info("model version {} announced; answering at versions {} to {}", announced, stager_->versions().base(),
               stager_->versions().staged());
  for (const auto& overlay : fold) {
    std::vector<const TableEntry*> tables;
    for (uint32_t id : overlay->tables()) {
      if (const TableEntry* table = tables_.Find(id)) tables.push_back(table);
    }
    // Behind every request routed before, which may read the rows as they were.
    for (auto& executor : executors_) {
      ShardTask task;
      task.control = [e = executor.get(), overlay, tables] { e->FoldOverlay(*overlay, tables); };
      executor->Submit(std::move(task));
    }
  }
}

void Server::Reply(const Message& request, absl::Status status, UninitializedVector<float>* values, uint32_t dim,
                   UninitializedVector<uint16_t>* half_values) {
  pb::Header h;
  h.set_type(pb::RESPONSE);
  h.set_seq(request.header.seq());
  h.set_origin(request.header.origin());
  h.set_catch_up(request.header.catch_up());
  h.set_epoch(epoch_);
  h.set_table(request.header.table());
  h.set_status(static_cast<int32_t>(status.code()));
  if (!status.ok()) {
    h.set_error(std::string(status.message()));
    spdlog::debug("request {} from sender {} failed: {}", request.header.seq(), request.header.sender(),
                  status.message());
  }
  std::vector<zmq::message_t> frames;
  if (values != nullptr) {
    h.set_num_keys(static_cast<uint32_t>(values->size() / std::max<uint32_t>(dim, 1)));
    h.set_dim(dim);
    frames.push_back(FrameFromVector(std::move(*values)));
  } else if (half_values != nullptr) {
    h.set_num_keys(static_cast<uint32_t>(half_values->size() / std::max<uint32_t>(dim, 1)));
    h.set_dim(dim);
    h.set_dtype(pb::FP16);
    frames.push_back(FrameFromVector(std::move(*half_values)));
  }
  TrafficCounters::Add(traffic_.bytes_out, TrafficCounters::FrameBytes(frames));
  if (auto st = SendMessage(socket_, h, &frames, &*request.routing_id); !st.ok()) {
    spdlog::debug("reply to sender {} not sent: {}", request.header.sender(), st.message());
  }
}

pb::ServerStats Server::Stats() const {
  pb::ServerStats s;
  uint64_t rows = 0;
  for (const auto& e : executors_) rows += e->rows();
  s.set_rows(rows);
  s.set_pull_requests(traffic_.pulls.load());
  s.set_push_requests(traffic_.pushes.load());
  s.set_dropped_messages(dropped_.load());
  return s;
}

void Server::PublishMetrics() {
  MetricWriter out;
  traffic_.WriteTo(out);
  out.Counter("sparta_dropped_messages_total", "Malformed or unexpected messages dropped.",
              static_cast<double>(dropped_.load()));
  if (zap_ != nullptr) {
    out.Counter("sparta_auth_refused_total", "Connections refused for not holding the cluster key.",
                static_cast<double>(zap_->refused()));
  }
  uint64_t rows = 0;
  for (const auto& e : executors_) {
    rows += e->rows();
    out.Gauge("sparta_executor_queue_depth", "Shard-executor tasks waiting to start.",
              static_cast<double>(e->queue_depth()), {{"executor", std::to_string(e->index())}});
  }
  published_rows_.store(rows, std::memory_order_relaxed);
  PublishShardRows();
  out.Gauge("sparta_table_rows", "Parameter rows this server holds (all tables, primary and replica).",
            static_cast<double>(rows));
  int primaries = 0, replicas = 0;
  for (uint32_t s = 0; s < shards_.num_shards(); ++s) {
    primaries += shards_.owner(s) == static_cast<uint32_t>(rank_);
    replicas += IsReplicaOf(s);
  }
  out.Gauge("sparta_shards", "Virtual shards on this server.", primaries, {{"as", "primary"}});
  out.Gauge("sparta_shards", "Virtual shards on this server.", replicas, {{"as", "replica"}});
  if (replicator_ != nullptr) {
    out.Gauge("sparta_replication_pending", "Pushes forwarded to replicas and not yet acknowledged.",
              static_cast<double>(replicator_->awaiting()));
  }
  out.Gauge("sparta_cluster_epoch", "Cluster view epoch this node acts on.", static_cast<double>(epoch_));
  pb::ServerStats tier;
  tier.set_memory_limit(config_.server.memory_limit_bytes);
  tier.set_resident_bytes(ResidentBytes());
  for (const TableEntry* table : tables_.All()) {
    const uint32_t id = table->spec.id();
    pb::TableTier* t = tier.add_tables();
    t->set_table(table->spec.name());
    for (const auto& e : executors_) {
      if (const TableTierStats* st = e->tier_stats(id)) AddExecutorTier(*st, e->row_cost(id), t);
    }
    WriteTableTierMetrics(*t, out);
  }
  if (config_.server.memory_limit_bytes != 0) {
    out.Gauge("sparta_server_memory_limit_bytes", "server.memory_limit.",
              static_cast<double>(config_.server.memory_limit_bytes));
  }
  if (store_ != nullptr) {
    const RowStore::Sizes sizes = store_->GetSizes();
    // The cold tier's logs (server/cold_logs.h) hold rows RocksDB has not
    // been given yet: they are on disk too.
    uint64_t log_file = 0, log_index = 0, log_rows = 0;
    for (const auto& e : executors_) {
      log_file += e->log_file_bytes();
      log_index += e->log_index_bytes();
      log_rows += e->log_rows();
    }
    tier.set_disk_bytes(sizes.sst_bytes + log_file);
    out.Gauge("sparta_cold_log_bytes", "The cold tier's logs: their files, and their index in DRAM.",
              static_cast<double>(log_file), {{"part", "file"}});
    out.Gauge("sparta_cold_log_bytes", "The cold tier's logs: their files, and their index in DRAM.",
              static_cast<double>(log_index), {{"part", "index"}});
    out.Gauge("sparta_cold_log_rows", "Cold rows in the cold tier's logs, not yet in RocksDB.",
              static_cast<double>(log_rows));
    out.Gauge("sparta_rocksdb_bytes", "RocksDB size by part.", static_cast<double>(sizes.sst_bytes), {{"part", "sst"}});
    out.Gauge("sparta_rocksdb_bytes", "RocksDB size by part.", static_cast<double>(sizes.memtable_bytes),
              {{"part", "memtable"}});
    out.Gauge("sparta_rocksdb_bytes", "RocksDB size by part.", static_cast<double>(sizes.wal_bytes), {{"part", "wal"}});
  }
  {
    std::lock_guard<std::mutex> lock(tier_mu_);
    tier_ = std::move(tier);
  }
  metrics_.Publish(std::move(out));
}

}  // namespace sparta
