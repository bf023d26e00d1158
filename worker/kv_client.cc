#include "worker/kv_client.h"

#include <bit>
#include <cstring>
#include <deque>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/socket_util.h"

namespace sparta {

using Clock = std::chrono::steady_clock;

// The caller-visible state of one logical pull or push.
class KVClient::Operation {
 public:
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
};

struct KVClient::Outgoing {
  int server = 0;
  pb::Header header;
  std::vector<zmq::message_t> frames;
  PendingPart part;
};

struct KVClient::ServerLink {
  pb::NodeInfo info;
  std::unique_ptr<zmq::socket_t> socket;
  uint64_t next_seq = 1;
  absl::flat_hash_map<uint64_t, PendingPart> pending;  // by seq
};

KVClient::KVClient(zmq::context_t* context, const Config& config, uint32_t node_id, const pb::ClusterView& view)
    : context_(context),
      config_(config),
      node_id_(node_id),
      epoch_(view.epoch()),
      shard_bits_(std::bit_width(static_cast<size_t>(view.shard_owner_size())) - 1),
      shard_owner_(view.shard_owner().begin(), view.shard_owner().end()) {
  std::vector<pb::NodeInfo> by_rank(config.cluster.servers);
  for (const auto& node : view.nodes()) {
    if (node.role() == pb::SERVER) by_rank[node.rank()] = node;
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

absl::Status KVClient::Start() {
  for (auto& link : servers_) {
    link->socket = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::dealer);
    ConfigureSocket(*link->socket);
    try {
      link->socket->connect(TcpEndpoint(link->info.host(), link->info.data_port()));
    } catch (const zmq::error_t& e) {
      return absl::UnavailableError(absl::StrCat("cannot connect to server-", link->info.rank(), ": ", e.what()));
    }
  }
  // The sockets move to the I/O thread here and are used only by it from now on.
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

KVClient::Ticket KVClient::Send(pb::MsgType type, uint32_t table, uint32_t dim, std::span<const uint64_t> keys,
                                std::span<const float> grads, float* out) {
  auto op = std::make_shared<Operation>();
  op->out_ = out;
  op->dim_ = dim;
  const int n = num_servers();
  // Two passes over the keys: find each key's server and count, then fill
  // every server's arrays, sized once (and its positions, for scattering
  // pulled rows back into request order).
  std::vector<uint16_t> server_of(keys.size());
  std::vector<uint32_t> count(n, 0);
  for (size_t i = 0; i < keys.size(); ++i) {
    server_of[i] = static_cast<uint16_t>(shard_owner_[ShardOf(keys[i], shard_bits_)]);
    ++count[server_of[i]];
  }
  std::vector<std::vector<uint64_t>> keys_of(n);
  std::vector<std::vector<uint32_t>> positions_of(n);
  const bool half = config_.wire.dtype == "fp16";
  std::vector<std::vector<float>> grads_of(type == pb::PUSH && !half ? n : 0);
  std::vector<std::vector<uint16_t>> half_grads_of(type == pb::PUSH && half ? n : 0);
  for (int s = 0; s < n; ++s) {
    keys_of[s].resize(count[s]);
    if (type == pb::PULL) positions_of[s].resize(count[s]);
    if (type == pb::PUSH && half) half_grads_of[s].resize(size_t{count[s]} * dim);
    if (type == pb::PUSH && !half) grads_of[s].resize(size_t{count[s]} * dim);
  }
  std::vector<uint32_t> filled(n, 0);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    const int s = server_of[i];
    const uint32_t j = filled[s]++;
    keys_of[s][j] = keys[i];
    if (type == pb::PULL) positions_of[s][j] = i;
    if (type == pb::PUSH && half) {
      FloatsToHalves(grads.data() + size_t{i} * dim, half_grads_of[s].data() + size_t{j} * dim, dim);
    } else if (type == pb::PUSH) {
      std::memcpy(grads_of[s].data() + size_t{j} * dim, grads.data() + size_t{i} * dim, dim * sizeof(float));
    }
  }
  std::vector<Outgoing> parts;
  for (int s = 0; s < n; ++s) {
    if (keys_of[s].empty()) continue;
    Outgoing o;
    o.server = s;
    o.header.set_type(type);
    o.header.set_table(table);
    o.header.set_num_keys(static_cast<uint32_t>(keys_of[s].size()));
    o.header.set_dim(dim);
    o.frames.push_back(FrameFromVector(std::move(keys_of[s])));
    if (half) o.header.set_dtype(pb::FP16);
    if (type == pb::PUSH) {
      o.frames.push_back(half ? FrameFromVector(std::move(half_grads_of[s])) : FrameFromVector(std::move(grads_of[s])));
    }
    o.part.op = op;
    o.part.positions = std::move(positions_of[s]);
    parts.push_back(std::move(o));
  }
  op->remaining_ = static_cast<int>(parts.size());
  if (parts.empty()) return op;
  if (aborted_.load()) {
    std::lock_guard<std::mutex> lock(abort_mu_);
    op->remaining_ = 1;
    op->Complete(abort_status_);
    return op;
  }
  for (Outgoing& o : parts) outbox_.Post(std::move(o));
  return op;
}

KVClient::Ticket KVClient::Pull(uint32_t table, uint32_t dim, std::span<const uint64_t> keys, float* out) {
  return Send(pb::PULL, table, dim, keys, {}, out);
}

KVClient::Ticket KVClient::Push(uint32_t table, uint32_t dim, std::span<const uint64_t> keys,
                                std::span<const float> grads) {
  return Send(pb::PUSH, table, dim, keys, grads, nullptr);
}

absl::Status KVClient::Wait(const Ticket& ticket) { return ticket->Wait(); }

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
  return op->Wait();
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
  PendingPart part = std::move(it->second);
  link.pending.erase(it);
  Operation& op = *part.op;
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
            "server-", s, " did not answer within worker.request_timeout (", config_.worker.request_timeout, " s)")));
        pending.erase(it++);
      } else {
        ++it;
      }
    }
  }
}

void KVClient::Run() {
  const int n = num_servers();
  std::vector<zmq::pollitem_t> items(n + 1);
  for (int s = 0; s < n; ++s) items[s] = {servers_[s]->socket->handle(), 0, ZMQ_POLLIN, 0};
  items[n] = {nullptr, outbox_.fd(), ZMQ_POLLIN, 0};
  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(config_.worker.request_timeout));
  std::deque<Outgoing> outgoing;
  auto next_deadline_check = Clock::now();
  while (!stop_.load()) {
    if (aborted_.load()) {
      std::lock_guard<std::mutex> lock(abort_mu_);
      FailAll(abort_status_);
    }
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    if (items[n].revents & ZMQ_POLLIN) {
      outbox_.Drain(&outgoing);
      for (Outgoing& o : outgoing) {
        ServerLink& link = *servers_[o.server];
        if (aborted_.load()) {
          std::lock_guard<std::mutex> lock(abort_mu_);
          o.part.op->Complete(abort_status_);
          continue;
        }
        const uint64_t seq = link.next_seq++;
        o.header.set_sender(node_id_);
        o.header.set_seq(seq);
        o.header.set_epoch(epoch_);
        if (auto st = SendMessage(*link.socket, o.header, &o.frames); !st.ok()) {
          o.part.op->Complete(absl::UnavailableError(absl::StrCat("server-", o.server, ": ", st.message())));
          continue;
        }
        o.part.deadline = Clock::now() + timeout;
        link.pending.emplace(seq, std::move(o.part));
      }
      outgoing.clear();
    }
    for (int s = 0; s < n; ++s) {
      if (!(items[s].revents & ZMQ_POLLIN)) continue;
      while (true) {
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
        OnResponse(s, m.header, m.frames);
      }
    }
    if (Clock::now() >= next_deadline_check) {
      CheckDeadlines();
      next_deadline_check = Clock::now() + std::chrono::milliseconds(500);
    }
  }
}

}  // namespace sparta
