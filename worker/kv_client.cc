#include "worker/kv_client.h"

#include <poll.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <deque>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/shard_order.h"
#include "common/cluster_auth.h"
#include "common/socket_util.h"
#include "common/uninitialized_vector.h"

namespace sparta {

using Clock = std::chrono::steady_clock;

namespace {

// The most bytes of values (a push's gradients, a pull's rows) one message
// to one server carries; a larger request goes as several messages, sent
// back to back. One message crosses the socket whole before the server
// applies any of it and replies; in parts, the server applies (or copies
// out) one part while the next crosses, and each side's ZeroMQ thread
// moves one part while the other side works on the one before. About a
// MiB: the transport's one-way rate of 1 MB messages is 1.5-2.5x its rate
// of 16 MB ones on these machines (the README's limits), and a part still
// carries thousands of keys, so the per-message costs stay small.
constexpr size_t kMaxPartBytes = size_t{1} << 20;

uint32_t PartKeys(uint32_t dim, bool half) {
  const size_t row_bytes = size_t{std::max<uint32_t>(dim, 1)} * (half ? 2 : 4);
  return static_cast<uint32_t>(std::max<size_t>(1, kMaxPartBytes / row_bytes));
}

// The order in which Send() copies keys into their parts (OrderByShard()
// of each key's shard_of): a server walks a part shard by shard
// (RequestRouter::Plan); when the part arrives in that order, its executor
// reads the gradients and writes the pulled rows front to back instead of
// at scattered places of a megabyte, which cost it as much as the lookups
// (sparta-kv-bench's 100k-key pushes and pulls with their keys sorted by
// shard beforehand: 1.1-1.35x, executor-bound). The scattering moves here,
// to the caller, who waits meanwhile. Empty (request order) below the size
// at which the server groups either.
std::vector<uint32_t> ShardOrder(std::span<const uint32_t> shard_of, uint32_t num_shards) {
  std::vector<uint32_t> order;
  if (shard_of.size() < kOrderByShardAtLeast) return order;
  std::vector<uint32_t> ends;
  OrderByShard(shard_of, num_shards, &ends, &order);
  return order;
}

// How many keys ahead the caller's scattered rows are fetched (Send's
// gather, OnResponse's scatter).
constexpr size_t kScatterAhead = 16;

// Asks for the cache lines of `bytes` at `p` ahead of a copy from them
// (kRead) or into them (kWrite). In shard order a request reads the
// caller's gradients, and a pull writes its rows, at random places of
// buffers of megabytes: without this each row's miss stalls its copy in
// turn (two thirds of a 100k-key push's client time); with it the misses of
// kScatterAhead rows overlap.
enum class Access { kRead = 0, kWrite = 1 };
template <Access kAccess>
inline void PrefetchBytes(const void* p, size_t bytes) {
  if (bytes == 0) return;
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63};
  const uintptr_t last = reinterpret_cast<uintptr_t>(p) + bytes - 1;
  for (uintptr_t line = first; line <= last; line += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), static_cast<int>(kAccess));
  }
}

}  // namespace

// The caller-visible state of one logical pull or push.
class KVClient::Operation {
 public:
  // A part was split into `n` pieces (failover): n - 1 more to wait for.
  void AddParts(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    remaining_ += n;
  }
  void Complete(const absl::Status& part_status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!part_status.ok() && status_.ok()) status_ = part_status;
    if (--remaining_ == 0) cv_.notify_all();
  }
  absl::Status Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return remaining_ == 0; });
    return status_;
  }

 private:
  friend class KVClient;
  std::mutex mu_;
  std::condition_variable cv_;
  int remaining_ = 0;  // server parts not yet answered
  absl::Status status_;
  float* out_ = nullptr;  // pulls: where rows go
  uint32_t dim_ = 0;
};

// One server's part of an operation, from the time it is queued until the
// server answers.
struct KVClient::PendingPart {
  Ticket op;
  std::vector<uint32_t> positions;  // pulls: where each returned row goes
  Clock::time_point deadline;
  uint64_t seq = 0;
  pb::Header header;                   // as sent
  std::vector<zmq::message_t> frames;  // shares the sent buffers, for a resend
};

struct KVClient::Outgoing {
  int server = 0;
  pb::Header header;
  std::vector<zmq::message_t> frames;
  PendingPart part;
};

struct KVClient::ServerLink {
  pb::NodeInfo info;
  std::unique_ptr<zmq::socket_t> socket;  // null once the server is dead
  int fd = -1;                            // the socket's ZMQ_FD
  absl::flat_hash_map<uint64_t, PendingPart> pending;  // by seq
};

KVClient::KVClient(zmq::context_t* context, const Config& config, uint32_t node_id, const pb::ClusterView& view)
    : context_(context),
      config_(config),
      node_id_(node_id),
      shards_(std::make_shared<const ShardView>(view)) {
  std::vector<pb::NodeInfo> by_rank(config.cluster.servers);
  for (const auto& node : view.nodes()) {
    if (node.role() != pb::SERVER) continue;
    if (static_cast<int>(by_rank.size()) <= node.rank()) by_rank.resize(node.rank() + 1);  // joined (--join)
    by_rank[node.rank()] = node;
  }
  for (auto& info : by_rank) {
    auto link = std::make_unique<ServerLink>();
    link->info = info;
    servers_.push_back(std::move(link));
  }
}

KVClient::~KVClient() {
  stop_.store(true);
  outbox_.Wake();
  if (thread_.joinable()) thread_.join();
  FailAll(absl::CancelledError("client closed"));
}

void KVClient::ConnectLink(ServerLink& link) {
  link.socket = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::dealer);
  ConfigureSocket(*link.socket);
  SecureClientSocket(*link.socket, config_.cluster);
  const std::string endpoint = DataEndpoint(link.info, config_.cluster.local_transport_mode);
  link.socket->connect(endpoint);
  link.fd = link.socket->get(zmq::sockopt::fd);
  spdlog::info("server-{} at {}", link.info.rank(), endpoint);
}

absl::Status KVClient::Start() {
  for (auto& link : servers_) {
    try {
      ConnectLink(*link);
    } catch (const zmq::error_t& e) {
      return absl::UnavailableError(absl::StrCat("cannot connect to server-", link->info.rank(), ": ", e.what()));
    }
  }
  // From here on the sockets are used under io_mu_ only.
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

KVClient::Ticket KVClient::Send(pb::MsgType type, uint32_t table, uint32_t dim, std::span<const uint64_t> keys,
                                std::span<const float> grads, float* out, uint64_t clock,
                                std::span<const uint32_t> counts, uint64_t step, uint64_t model_version) {
  auto op = std::make_shared<Operation>();
  op->out_ = out;
  op->dim_ = dim;
  // By the view's ranks, not servers_ (which the I/O side grows when a
  // server joins, under io_mu_).
  const std::shared_ptr<const ShardView> shards = view();
  const int n = static_cast<int>(shards->rank_bound());
  // Two passes over the keys: find each key's server and count, then fill
  // every part's arrays, sized once (and its positions, for scattering
  // pulled rows back into request order), taking the keys by shard
  // (ShardOrder()). A server's keys go out in parts of at most part_keys
  // keys (PartKeys(): about kMaxPartBytes of values), one after another,
  // so the server applies one part while the next crosses.
  std::vector<uint32_t> shard_of(keys.size());
  std::vector<uint16_t> server_of(keys.size());
  std::vector<uint32_t> count(n, 0);
  for (size_t i = 0; i < keys.size(); ++i) {
    shard_of[i] = shards->shard_of(keys[i]);
    server_of[i] = static_cast<uint16_t>(shards->owner(shard_of[i]));
    ++count[server_of[i]];
  }
  const std::vector<uint32_t> order = ShardOrder(shard_of, shards->num_shards());
  const bool half = config_.wire.value_type == WireDtype::kFp16;
  const uint32_t part_keys = PartKeys(dim, half);
  // first_part[s]: server s's first part; its parts follow in key order.
  std::vector<uint32_t> first_part(n + 1, 0);
  for (int s = 0; s < n; ++s) first_part[s + 1] = first_part[s] + (count[s] + part_keys - 1) / part_keys;
  const uint32_t num_parts = first_part[n];
  const bool with_counts = type == pb::PUSH && !counts.empty();
  // Every element is written below before the part is sent: no zero-fill
  // (a memset of a 16 MB push's gradients before they are copied in).
  struct PartArrays {
    UninitializedVector<uint64_t> keys;
    std::vector<uint32_t> positions;
    UninitializedVector<float> grads;
    UninitializedVector<uint16_t> half_grads;
    UninitializedVector<uint32_t> counts;
  };
  std::vector<PartArrays> arrays(num_parts);
  for (int s = 0; s < n; ++s) {
    for (uint32_t p = first_part[s]; p < first_part[s + 1]; ++p) {
      const uint32_t size = std::min(part_keys, count[s] - (p - first_part[s]) * part_keys);
      PartArrays& a = arrays[p];
      a.keys.resize(size);
      if (type == pb::PULL) a.positions.resize(size);
      if (type == pb::PUSH && half) a.half_grads.resize(size_t{size} * dim);
      if (type == pb::PUSH && !half) a.grads.resize(size_t{size} * dim);
      if (with_counts) a.counts.resize(size);
    }
  }
  op->remaining_ = static_cast<int>(num_parts);
  if (num_parts == 0) return op;
  if (aborted_.load()) {
    std::lock_guard<std::mutex> lock(abort_mu_);
    op->remaining_ = 1;
    op->Complete(abort_status_);
    return op;
  }
  // A part goes out as soon as its last key is copied in, so the server
  // applies the first part of a large push while this thread still copies
  // the next (before, the server saw nothing until all 16 MB of a dense
  // push had been copied).
  auto emit = [&](int s, uint32_t p) {
    PartArrays& a = arrays[p];
    Outgoing o;
    o.server = s;
    o.header.set_type(type);
    o.header.set_table(table);
    o.header.set_num_keys(static_cast<uint32_t>(a.keys.size()));
    o.header.set_dim(dim);
    if (clock != 0) o.header.set_clock(clock);
    if (step != 0) o.header.set_step(step);
    if (model_version != 0) o.header.set_model_version(model_version);
    o.frames.push_back(FrameFromVector(std::move(a.keys)));
    if (half) o.header.set_dtype(pb::FP16);
    if (type == pb::PUSH) {
      o.frames.push_back(half ? FrameFromVector(std::move(a.half_grads)) : FrameFromVector(std::move(a.grads)));
    }
    if (with_counts) {
      o.header.set_key_counts(true);
      o.frames.push_back(FrameFromVector(std::move(a.counts)));
    }
    o.part.op = op;
    o.part.positions = std::move(a.positions);
    Deliver(std::move(o));
  };
  std::vector<uint32_t> filled(n, 0);
  for (size_t k = 0; k < keys.size(); ++k) {
    const uint32_t i = order.empty() ? static_cast<uint32_t>(k) : order[k];
    if (!order.empty() && k + kScatterAhead < keys.size()) {
      const uint32_t ahead = order[k + kScatterAhead];
      __builtin_prefetch(keys.data() + ahead);
      if (type == pb::PUSH) PrefetchBytes<Access::kRead>(grads.data() + size_t{ahead} * dim, dim * sizeof(float));
    }
    const int s = server_of[i];
    const uint32_t nth = filled[s]++;
    const uint32_t p = first_part[s] + nth / part_keys;
    PartArrays& a = arrays[p];
    const uint32_t j = nth % part_keys;
    a.keys[j] = keys[i];
    if (type == pb::PULL) a.positions[j] = i;
    if (with_counts) a.counts[j] = counts[i];
    if (type == pb::PUSH && half) {
      FloatsToHalves(grads.data() + size_t{i} * dim, a.half_grads.data() + size_t{j} * dim, dim);
    } else if (type == pb::PUSH) {
      std::memcpy(a.grads.data() + size_t{j} * dim, grads.data() + size_t{i} * dim, dim * sizeof(float));
    }
    if (j + 1 == a.keys.size()) emit(s, p);
  }
  return op;
}

void KVClient::Deliver(Outgoing o) {
  // The sockets free: sent from this thread, after what was queued before
  // (so one thread's requests keep their order). Else the I/O thread sends.
  std::unique_lock<std::mutex> lock(io_mu_, std::try_to_lock);
  if (!lock.owns_lock()) {
    outbox_.Post(std::move(o));
    return;
  }
  NoteCallerServes();
  ServeLocked(&o);
}

KVClient::Ticket KVClient::Pull(uint32_t table, uint32_t dim, std::span<const uint64_t> keys, float* out,
                                uint64_t clock, uint64_t model_version) {
  return Send(pb::PULL, table, dim, keys, {}, out, clock, {}, 0, model_version);
}

KVClient::Ticket KVClient::Push(uint32_t table, uint32_t dim, std::span<const uint64_t> keys,
                                std::span<const float> grads, uint64_t clock, std::span<const uint32_t> counts,
                                uint64_t step) {
  return Send(pb::PUSH, table, dim, keys, grads, nullptr, clock, counts, step);
}

bool KVClient::Done(const Ticket& ticket) {
  std::lock_guard<std::mutex> lock(ticket->mu_);
  return ticket->remaining_ == 0;
}

absl::Status KVClient::Wait(const Ticket& ticket) {
  if (!Done(ticket)) {
    // Receives the reply on this thread while no one else serves the
    // sockets; else the one who does completes it.
    std::unique_lock<std::mutex> lock(io_mu_, std::try_to_lock);
    if (lock.owns_lock()) {
      NoteCallerServes();
      ServeUntilDone(ticket);
    }
  }
  return ticket->Wait();
}

absl::Status KVClient::Wait(const Ticket& ticket, double* blocked_seconds) {
  if (Done(ticket)) return Wait(ticket);
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = Wait(ticket);
  *blocked_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return status;
}

void KVClient::ServeUntilDone(const Ticket& ticket) {
  while (true) {
    ServeLocked();
    if (Done(ticket) || stop_.load()) return;
    // ServeLocked() has just read every socket until it had nothing more,
    // so each socket's ZMQ_FD signals the next reply: one poll of the plain
    // fds suffices. zmq_poll would first look at each socket again and poll
    // once without waiting, system calls a small request paid every time.
    std::vector<pollfd> fds = {{outbox_.fd(), POLLIN, 0}, {views_.fd(), POLLIN, 0}};
    for (const auto& link : servers_) {
      if (link->socket) fds.push_back({link->fd, POLLIN, 0});
    }
    // Bounded, so that resends and deadlines are served on time.
    ::poll(fds.data(), fds.size(), retries_.empty() ? 50 : 5);
    ClearMailboxWakes(fds);
  }
}

absl::Status KVClient::CreateTable(const pb::TableSpec& spec) {
  auto op = std::make_shared<Operation>();
  op->remaining_ = num_servers();
  for (int s = 0; s < num_servers(); ++s) {
    Outgoing o;
    o.server = s;
    o.header.set_type(pb::CREATE_TABLE);
    *o.header.mutable_table_spec() = spec;
    o.part.op = op;
    outbox_.Post(std::move(o));
  }
  return Wait(op);
}

void KVClient::UpdateView(const pb::ClusterView& view) { views_.Post(view); }

void KVClient::AdoptView(const pb::ClusterView& view) {
  {
    std::lock_guard<std::mutex> lock(view_mu_);
    if (view.epoch() <= shards_->epoch()) return;
    shards_ = std::make_shared<const ShardView>(view);
  }
  // Parts at a dead (or replaced) server go to the shards' new primaries.
  std::vector<PendingPart> orphans;
  auto retire = [&](ServerLink& link) {
    link.socket.reset();
    for (auto& [seq, part] : link.pending) orphans.push_back(std::move(part));
    link.pending.clear();
  };
  for (uint32_t dead : view.dead_servers()) {
    if (dead < servers_.size() && servers_[dead]->socket) {
      spdlog::warn("server-{} is gone (view epoch {}); resending its {} pending requests", dead, view.epoch(),
                   servers_[dead]->pending.size());
      retire(*servers_[dead]);
    }
  }
  for (const auto& node : view.nodes()) {
    if (node.role() != pb::SERVER) continue;
    // A server that joined the job (sparta-server --join).
    while (static_cast<int>(servers_.size()) <= node.rank()) servers_.push_back(std::make_unique<ServerLink>());
    ServerLink& link = *servers_[node.rank()];
    if (link.socket && link.info.id() == node.id()) continue;
    retire(link);
    link.info = node;
    ConnectLink(link);
  }
  for (auto& part : orphans) Reroute(std::move(part));
}

void KVClient::SendPart(int server, uint64_t seq, pb::Header header, std::vector<zmq::message_t> frames,
                        PendingPart part) {
  ServerLink& link = *servers_[server];
  header.set_sender(node_id_);
  header.set_seq(seq);
  header.set_epoch(view()->epoch());
  part.seq = seq;
  part.header = header;
  part.frames.clear();
  for (auto& frame : frames) part.frames.emplace_back().copy(frame);
  if (!link.socket) {  // routed with a view that has since changed
    Reroute(std::move(part));
    return;
  }
  if (link.pending.count(seq) != 0) {
    // Another part of the same push is in flight to this server under this
    // seq: a part resent under one view was split again under the next, and
    // two of its pieces met here. A reply names only the seq, so this one
    // waits until the other is answered (its keys' shards are new there:
    // servers tell a push's shards apart).
    retries_.emplace_back(Clock::now() + std::chrono::milliseconds(20), std::move(part));
    return;
  }
  const uint64_t bytes = TrafficCounters::FrameBytes(frames);
  if (auto st = SendMessage(*link.socket, header, &frames); !st.ok()) {
    part.op->Complete(absl::UnavailableError(absl::StrCat("server-", server, ": ", st.message())));
    return;
  }
  // A resent part keeps its first deadline: retries during a failover do
  // not extend worker.request_timeout.
  if (part.deadline == Clock::time_point()) {
    part.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(config_.worker.request_timeout));
  }
  TrafficCounters::Add(traffic_.bytes_out, bytes);
  if (header.type() == pb::PULL) {
    TrafficCounters::Add(traffic_.pulls, 1);
    TrafficCounters::Add(traffic_.pulled_keys, header.num_keys());
  } else if (header.type() == pb::PUSH) {
    TrafficCounters::Add(traffic_.pushes, 1);
    TrafficCounters::Add(traffic_.pushed_keys, header.num_keys());
  }
  link.pending.emplace(seq, std::move(part));
}

void KVClient::Reroute(PendingPart part) {
  if (part.frames.empty()) {  // CREATE_TABLE: a dead server needs no table
    part.op->Complete(absl::OkStatus());
    return;
  }
  const pb::Header& h = part.header;
  const bool has_values = part.frames.size() > 1;
  const bool has_counts = h.key_counts();
  std::vector<uint64_t> key_scratch;
  const std::span<const uint64_t> keys = FrameView<uint64_t>(part.frames[0], &key_scratch);
  const ShardView::Groups groups = view()->ByOwner(keys);
  if (groups.whole()) {
    // Every key has the same new primary: the part goes there as it is,
    // under the same sequence number (a server that already applied this
    // push, as a replica, recognizes it and only acknowledges).
    std::vector<zmq::message_t> frames = std::move(part.frames);
    const uint64_t seq = part.seq;
    pb::Header header = h;
    SendPart(static_cast<int>(groups.whole_to[0]), seq, std::move(header), std::move(frames), std::move(part));
    return;
  }
  const size_t row_bytes = has_values ? size_t{h.dim()} * ValueBytes(h.dtype()) : 0;
  std::vector<uint32_t> count_scratch;
  const std::span<const uint32_t> counts =
      has_counts ? FrameView<uint32_t>(part.frames[2], &count_scratch) : std::span<const uint32_t>();
  int servers = 0;
  for (const auto& p : groups.positions) servers += !p.empty();
  part.op->AddParts(servers - 1);
  for (uint32_t server = 0; server < groups.positions.size(); ++server) {
    const std::vector<uint32_t>& mine = groups.positions[server];
    if (mine.empty()) continue;
    pb::Header header = h;
    header.set_num_keys(static_cast<uint32_t>(mine.size()));
    std::vector<zmq::message_t> frames;
    frames.push_back(FrameFromVector(ShardView::Gather<uint64_t>(keys.data(), mine, 1)));
    if (has_values) frames.push_back(FrameFromVector(ShardView::Gather<char>(part.frames[1].data(), mine, row_bytes)));
    if (has_counts) frames.push_back(FrameFromVector(ShardView::Gather<uint32_t>(counts.data(), mine, 1)));
    PendingPart sub;
    sub.op = part.op;
    sub.deadline = part.deadline;
    if (!part.positions.empty()) sub.positions = ShardView::Gather<uint32_t>(part.positions.data(), mine, 1);
    SendPart(static_cast<int>(server), part.seq, std::move(header), std::move(frames), std::move(sub));
  }
}

void KVClient::Abort(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(abort_mu_);
    if (aborted_.load()) return;
    abort_status_ = status;
    aborted_.store(true);
  }
  outbox_.Wake();  // the I/O thread fails what is pending
}

void KVClient::FailAll(const absl::Status& status) {
  for (auto& [when, part] : retries_) part.op->Complete(status);
  retries_.clear();
  for (auto& link : servers_) {
    for (auto& [seq, part] : link->pending) part.op->Complete(status);
    link->pending.clear();
  }
}

void KVClient::OnResponse(int server, const pb::Header& h, std::vector<zmq::message_t>& frames) {
  ServerLink& link = *servers_[server];
  auto it = link.pending.find(h.seq());
  if (it == link.pending.end()) {
    spdlog::debug("server-{}: response to unknown request {}", server, h.seq());
    return;
  }
  TrafficCounters::Add(traffic_.bytes_in, TrafficCounters::FrameBytes(frames));
  PendingPart part = std::move(it->second);
  link.pending.erase(it);
  Operation& op = *part.op;
  if (h.status() == static_cast<int>(absl::StatusCode::kAborted)) {
    // The server is at another epoch than this client: resend once the
    // views agree (the scheduler sends them to everyone at once).
    spdlog::debug("server-{}: {}; resending request {}", server, h.error(), h.seq());
    retries_.emplace_back(Clock::now() + std::chrono::milliseconds(20), std::move(part));
    return;
  }
  if (h.status() != 0) {
    op.Complete(absl::Status(static_cast<absl::StatusCode>(h.status()),
                             absl::StrCat("server-", server, ": ", h.error())));
    return;
  }
  if (op.out_ != nullptr) {
    const size_t row_bytes = size_t{op.dim_} * ValueBytes(h.dtype());
    if (frames.size() != 1 || h.dim() != op.dim_ || h.num_keys() != part.positions.size()) {
      op.Complete(absl::DataLossError(absl::StrCat("server-", server, ": pull reply does not match the request")));
      return;
    }
    const char* rows = static_cast<const char*>(frames[0].data());
    for (size_t k = 0; k < part.positions.size(); ++k) {
      if (k + kScatterAhead < part.positions.size()) {
        PrefetchBytes<Access::kWrite>(op.out_ + size_t{part.positions[k + kScatterAhead]} * op.dim_,
                                      op.dim_ * sizeof(float));
      }
      float* out = op.out_ + size_t{part.positions[k]} * op.dim_;
      if (h.dtype() == pb::FP16) {
        // Halves arrive unaligned only in tiny inline frames; memcpy keeps it safe.
        uint16_t row[256];
        for (uint32_t done = 0; done < op.dim_; done += 256) {
          const uint32_t take = std::min<uint32_t>(256, op.dim_ - done);
          std::memcpy(row, rows + k * row_bytes + done * 2, take * 2);
          HalvesToFloats(row, out + done, take);
        }
      } else {
        std::memcpy(out, rows + k * row_bytes, row_bytes);
      }
    }
  }
  op.Complete(absl::OkStatus());
}

void KVClient::CheckDeadlines() {
  const auto now = Clock::now();
  for (size_t s = 0; s < servers_.size(); ++s) {
    auto& pending = servers_[s]->pending;
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.deadline < now) {
        it->second.op->Complete(absl::DeadlineExceededError(absl::StrCat(
            "server-", s, " did not answer within ", config_.worker.request_timeout,
            " s (worker.request_timeout; on a serving front-end, serving.deadline)")));
        pending.erase(it++);
      } else {
        ++it;
      }
    }
  }
}

void KVClient::ServeLocked(Outgoing* also) {
  if (aborted_.load()) {
    std::lock_guard<std::mutex> lock(abort_mu_);
    FailAll(abort_status_);
  }
  std::deque<pb::ClusterView> views;
  views_.TakeQueued(&views);
  for (const auto& view : views) AdoptView(view);
  std::deque<Outgoing> outgoing;
  outbox_.TakeQueued(&outgoing);
  if (also != nullptr) outgoing.push_back(std::move(*also));
  for (Outgoing& o : outgoing) {
    if (aborted_.load()) {
      std::lock_guard<std::mutex> lock(abort_mu_);
      o.part.op->Complete(abort_status_);
      continue;
    }
    SendPart(o.server, next_seq_++, std::move(o.header), std::move(o.frames), std::move(o.part));
  }
  while (!retries_.empty() && retries_.front().first <= Clock::now()) {
    PendingPart part = std::move(retries_.front().second);
    retries_.pop_front();
    Reroute(std::move(part));
  }
  if (Clock::now() >= next_deadline_check_) {
    CheckDeadlines();
    next_deadline_check_ = Clock::now() + std::chrono::milliseconds(500);
  }
  // Last: a send may have taken a socket's ZMQ_FD signal for a reply.
  ReceiveAllLocked();
  size_t pending = retries_.size();
  for (const auto& link : servers_) pending += link->pending.size();
  pending_parts_.store(pending, std::memory_order_relaxed);
}

void KVClient::ReceiveAllLocked() {
  for (size_t s = 0; s < servers_.size(); ++s) {
    while (servers_[s]->socket) {
      auto got = ReceiveMessage(*servers_[s]->socket, /*from_router=*/false);
      if (!got.ok()) {
        spdlog::warn("server-{}: dropped a malformed reply: {}", s, got.status().message());
        continue;
      }
      if (!got->has_value()) break;
      Message& m = **got;
      if (m.header.type() != pb::RESPONSE) {
        spdlog::warn("server-{}: dropped unexpected {}", s, MsgTypeName(m.header.type()));
        continue;
      }
      OnResponse(static_cast<int>(s), m.header, m.frames);
    }
  }
}

void KVClient::NoteCallerServes() {
  caller_served_at_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
}

bool KVClient::CallersServe() const {
  // Long enough to span a caller's compute between two requests; short
  // enough that replies nobody waits for are read soon after callers stop.
  constexpr int64_t kRecentNs = 10'000'000;
  return Clock::now().time_since_epoch().count() - caller_served_at_.load(std::memory_order_relaxed) < kRecentNs;
}

void KVClient::Run() {
  std::vector<pollfd> fds;
  while (!stop_.load()) {
    int timeout_ms;
    {
      // While callers serve the sockets, a caller holding the lock is not
      // waited for: it reads what arrives.
      std::unique_lock<std::mutex> lock(io_mu_, std::defer_lock);
      const bool callers = CallersServe();
      if (callers) {
        if (!lock.try_lock()) {
          // The holder drains the outbox and views too (it polls their
          // fds): watching them here would spin until it does.
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
      } else {
        lock.lock();
      }
      // The last poll's wake-ups are cleared here, under the lock and just
      // before ServeLocked() takes the items: cleared after that poll
      // without the lock, a wake-up for an item posted while a caller held
      // the lock would be lost, and the item would wait for that caller's
      // next poll to time out.
      if (!fds.empty()) ClearMailboxWakes(fds);
      ServeLocked();
      // Sockets change on failover, so the poll set is rebuilt every round.
      fds = {{outbox_.fd(), POLLIN, 0}, {views_.fd(), POLLIN, 0}};
      if (!callers) {
        for (const auto& link : servers_) {
          if (link->socket) fds.push_back({link->fd, POLLIN, 0});
        }
      }
      timeout_ms = callers ? 1 : retries_.empty() ? 100 : 5;
    }
    // Without the lock: a caller may serve the sockets meanwhile. ZMQ_FD
    // is readable when a socket has news; what it is, the next round reads.
    ::poll(fds.data(), fds.size(), timeout_ms);
  }
}

void KVClient::ClearMailboxWakes(const std::vector<pollfd>& fds) {
  // fds[0] and fds[1] are the outbox's and the views' (both polls put them
  // first); their items are taken by the next ServeLocked(), in the same
  // hold of io_mu_ (Mailbox::TakeQueued says why).
  if (fds[0].revents & POLLIN) outbox_.ClearWake();
  if (fds[1].revents & POLLIN) views_.ClearWake();
}

}  // namespace sparta
