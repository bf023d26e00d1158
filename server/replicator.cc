#include "server/replicator.h"

#include <bit>
#include <cstring>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/cluster_auth.h"
#include "common/socket_util.h"
#include "common/traffic_counters.h"

namespace sparta {

namespace {

// A forward's frames: the keys at `positions` of a push, their values
// (`row_bytes` each) and, when `counts` is not null, their occurrences.
std::vector<zmq::message_t> GatherFrames(const uint64_t* keys, const void* values, const uint32_t* counts,
                                         std::span<const uint32_t> positions, size_t row_bytes) {
  std::vector<zmq::message_t> frames;
  frames.push_back(FrameFromVector(ShardView::Gather<uint64_t>(keys, positions, 1)));
  frames.push_back(FrameFromVector(ShardView::Gather<char>(values, positions, row_bytes)));
  if (counts != nullptr) frames.push_back(FrameFromVector(ShardView::Gather<uint32_t>(counts, positions, 1)));
  return frames;
}

}  // namespace

Replicator::Replicator(zmq::context_t* context, const ClusterConfig& cluster, uint32_t self_id, int self_rank,
                       bool ack_all, size_t held_bytes_without_waiting)
    : context_(context),
      cluster_(cluster),
      self_id_(self_id),
      self_rank_(self_rank),
      ack_all_(ack_all),
      held_bytes_without_waiting_(held_bytes_without_waiting) {}

void Replicator::UpdateView(const pb::ClusterView& view, const AckCallback& on_ack,
                            const std::vector<pb::TableSpec>& tables) {
  shards_ = ShardView(view);
  if (peers_.size() <= static_cast<size_t>(self_rank_)) peers_.resize(self_rank_ + 1);
  for (const pb::NodeInfo& node : view.nodes()) {
    if (node.role() != pb::SERVER || node.rank() == self_rank_) continue;
    if (peers_.size() <= static_cast<size_t>(node.rank())) peers_.resize(node.rank() + 1);
    Peer& peer = peers_[node.rank()];
    if (peer.socket && peer.info.id() == node.id()) continue;
    Release(peer, on_ack);
    peer = Peer();  // a new server under this rank starts from nothing
    peer.info = node;
    peer.socket = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::dealer);
    ConfigureSocket(*peer.socket);
    SecureClientSocket(*peer.socket, cluster_);
    const std::string endpoint = DataEndpoint(node, cluster_.local_transport_mode);
    peer.socket->connect(endpoint);
    spdlog::info("replicas on server-{} at {}", node.rank(), endpoint);
    for (const pb::TableSpec& spec : tables) {
      // Answered like any request; ReceiveAcks awaits no answer of seq 0.
      pb::Header h;
      h.set_type(pb::CREATE_TABLE);
      h.set_sender(self_id_);
      *h.mutable_table_spec() = spec;
      std::vector<zmq::message_t> frames;
      if (auto st = SendMessage(*peer.socket, h, &frames); !st.ok()) {
        spdlog::warn("tables not sent to server-{}: {}", node.rank(), st.message());
      }
    }
  }
  for (uint32_t dead : view.dead_servers()) {
    if (dead >= peers_.size() || !peers_[dead].socket) continue;
    Release(peers_[dead], on_ack);
    peers_[dead] = Peer();
    // The scheduler has taken the dead server out of every shard: what it
    // had not acknowledged is no longer owed.
    std::vector<std::shared_ptr<Request>> released;
    for (auto it = awaiting_.begin(); it != awaiting_.end();) {
      if (std::get<0>(it->first) == dead) {
        released.push_back(std::move(it->second.request));
        awaiting_.erase(it++);
      } else {
        ++it;
      }
    }
    for (const auto& request : released) on_ack(request, absl::OkStatus());
  }
}

int Replicator::Forward(const std::shared_ptr<Request>& request, uint64_t epoch, const std::vector<uint32_t>* only) {
  if (!shards_.any_replicas()) return 0;  // replication factor 1: nothing to do per key
  const auto keys = request->keys;
  const pb::Header& in = request->message.header;
  const ShardView::Groups groups = shards_.ByReplica(keys, only);
  const size_t row_bytes = size_t{in.dim()} * ValueBytes(in.dtype());
  int acks = 0;
  for (uint32_t peer = 0; peer < peers_.size(); ++peer) {
    if (!peers_[peer].socket) continue;
    Outgoing out;
    if (groups.whole()) {
      // Every key goes here: the received frames go out as they are.
      if (std::find(groups.whole_to.begin(), groups.whole_to.end(), peer) == groups.whole_to.end()) continue;
      out.frames.resize(request->message.frames.size());
      for (size_t f = 0; f < out.frames.size(); ++f) out.frames[f].copy(request->message.frames[f]);  // shares the buffer
      out.header.set_num_keys(in.num_keys());
    } else {
      if (peer >= groups.positions.size() || groups.positions[peer].empty()) continue;
      const std::vector<uint32_t>& mine = groups.positions[peer];
      out.header.set_num_keys(static_cast<uint32_t>(mine.size()));
      out.frames = GatherFrames(keys.data(), request->message.frames[1].data(),
                                request->counts.empty() ? nullptr : request->counts.data(), mine, row_bytes);
    }
    // Replicas make the same admission and expiry decisions as this primary:
    // they count the same occurrences and stamp rows with the same step and time.
    out.header.set_key_counts(in.key_counts());
    out.header.set_step(in.step());
    out.header.set_apply_time(in.apply_time());
    out.header.set_type(pb::REPLICATE);
    out.header.set_sender(self_id_);
    out.header.set_origin(in.sender());
    out.header.set_seq(in.seq());
    out.header.set_epoch(epoch);
    out.header.set_table(in.table());
    out.header.set_dim(in.dim());
    out.header.set_dtype(in.dtype());
    out.header.set_clock(in.clock());
    Peer& p = peers_[peer];
    Outgoing held;
    const bool split = SplitBlocked(p, &out, &held);
    const bool now = out.header.num_keys() > 0;
    // A held piece the push does not wait for, while few enough are held.
    const bool catch_up =
        split && held_bytes_ + TrafficCounters::FrameBytes(held.frames) <= held_bytes_without_waiting_;
    if (catch_up) held.header.set_catch_up(true);
    if (ack_all_ && (now || !catch_up)) {
      awaiting_[{peer, in.sender(), in.seq()}] = Awaited{request, (now ? 1 : 0) + (split && !catch_up ? 1 : 0)};
      held.awaited = split && !catch_up;
      ++acks;
    } else if (split && !catch_up && !ack_all_) {
      // Too much held: the push waits until its forward goes out.
      held.waiter = request;
      ++acks;
    }
    if (now) SendNow(p, peer, out);
    if (split) Hold(p, std::move(held));
  }
  return acks;
}

bool Replicator::SplitBlocked(const Peer& p, Outgoing* message, Outgoing* held) const {
  if (p.streaming.empty() && p.held.empty()) return false;
  std::vector<uint64_t> scratch;
  const auto keys = FrameView<uint64_t>(message->frames[0], &scratch);
  std::vector<uint32_t> go, wait;
  for (uint32_t i = 0; i < keys.size(); ++i) (Blocked(p, shards_.shard_of(keys[i])) ? wait : go).push_back(i);
  if (wait.empty()) return false;
  const pb::Header& h = message->header;
  const size_t row_bytes = size_t{h.dim()} * ValueBytes(h.dtype());
  const auto* counts = message->frames.size() > 2 ? static_cast<const uint32_t*>(message->frames[2].data()) : nullptr;
  auto piece = [&](const std::vector<uint32_t>& positions) {
    Outgoing out;
    out.header = h;
    out.header.set_num_keys(static_cast<uint32_t>(positions.size()));
    out.frames = GatherFrames(keys.data(), message->frames[1].data(), counts, positions, row_bytes);
    for (uint32_t i : positions) out.shards.push_back(shards_.shard_of(keys[i]));
    std::sort(out.shards.begin(), out.shards.end());
    out.shards.erase(std::unique(out.shards.begin(), out.shards.end()), out.shards.end());
    return out;
  };
  *held = piece(wait);
  held->waiter = std::move(message->waiter);
  held->awaited = message->awaited;
  if (go.empty()) {
    message->header.set_num_keys(0);
    message->frames.clear();
  } else {
    Outgoing now = piece(go);
    now.shards.clear();
    now.awaited = message->awaited;
    *message = std::move(now);
  }
  return true;
}

void Replicator::Hold(Peer& p, Outgoing message) {
  held_bytes_ += TrafficCounters::FrameBytes(message.frames);
  peak_held_bytes_ = std::max(peak_held_bytes_, held_bytes_);
  for (uint32_t s : message.shards) ++p.held_shards[s];
  p.held.push_back(std::move(message));
}

void Replicator::SendNow(Peer& p, uint32_t peer, Outgoing& message) {
  if (auto st = SendMessage(*p.socket, message.header, &message.frames); !st.ok()) {
    spdlog::warn("forward to server-{} not sent: {}", peer, st.message());
  }
}

void Replicator::HoldForSnapshot(uint32_t peer, uint32_t shard) {
  if (peer < peers_.size() && peers_[peer].socket) ++peers_[peer].streaming[shard];
}

void Replicator::SendSnapshot(uint32_t peer, pb::Header header, std::vector<zmq::message_t> frames) {
  if (peer >= peers_.size() || !peers_[peer].socket) return;
  header.set_sender(self_id_);
  if (auto st = SendMessage(*peers_[peer].socket, header, &frames); !st.ok()) {
    spdlog::warn("snapshot to server-{} not sent: {}", peer, st.message());
  }
}

void Replicator::SnapshotDone(uint32_t peer, uint32_t shard, const AckCallback& on_ack) {
  if (peer >= peers_.size() || !peers_[peer].socket) return;
  Peer& p = peers_[peer];
  if (auto it = p.streaming.find(shard); it != p.streaming.end() && --it->second <= 0) p.streaming.erase(it);
  Flush(peer, on_ack);
}

void Replicator::Flush(uint32_t peer, const AckCallback& on_ack) {
  Peer& p = peers_[peer];
  std::deque<Outgoing> held;
  held.swap(p.held);
  p.held_shards.clear();
  std::vector<std::shared_ptr<Request>> sent;
  for (auto& message : held) {
    held_bytes_ -= TrafficCounters::FrameBytes(message.frames);
    // What still waits on a stream, or behind a held piece of its shard,
    // stays (in order); the rest goes now.
    Outgoing rest;
    const bool split = SplitBlocked(p, &message, &rest);
    if (message.header.num_keys() > 0) {
      SendNow(p, peer, message);
      if (split && message.awaited) {
        auto it = awaiting_.find(AckKey{peer, message.header.origin(), message.header.seq()});
        if (it != awaiting_.end()) ++it->second.pieces;  // one piece more to answer
      }
    }
    if (split) {
      Hold(p, std::move(rest));
    } else if (message.waiter) {
      sent.push_back(std::move(message.waiter));
    }
  }
  for (const auto& request : sent) on_ack(request, absl::OkStatus());
}

void Replicator::Release(Peer& peer, const AckCallback& on_ack) {
  std::vector<std::shared_ptr<Request>> waiting;
  for (auto& message : peer.held) {
    held_bytes_ -= TrafficCounters::FrameBytes(message.frames);
    if (message.waiter) waiting.push_back(std::move(message.waiter));
  }
  peer.held.clear();
  peer.held_shards.clear();
  peer.streaming.clear();
  for (const auto& request : waiting) on_ack(request, absl::OkStatus());
}

void Replicator::AddPollItems(std::vector<zmq::pollitem_t>* items) {
  for (auto& peer : peers_) {
    if (peer.socket) items->push_back({peer.socket->handle(), 0, ZMQ_POLLIN, 0});
  }
}

void Replicator::ReceiveAcks(const AckCallback& on_ack,
                             const std::function<void(const pb::Header&)>& on_snapshot_ack) {
  for (uint32_t rank = 0; rank < peers_.size(); ++rank) {
    while (peers_[rank].socket) {
      auto got = ReceiveMessage(*peers_[rank].socket, /*from_router=*/false);
      if (!got.ok()) {
        spdlog::warn("server-{}: dropped a malformed acknowledgement: {}", rank, got.status().message());
        continue;
      }
      if (!got->has_value()) break;
      const pb::Header& h = (*got)->header;
      if (h.type() == pb::SHARD_SNAPSHOT_ACK) {
        on_snapshot_ack(h);
        continue;
      }
      if (h.type() != pb::RESPONSE) continue;
      if (h.catch_up()) {
        // No push waits for it; a refusal means the replica left the shard.
        if (h.status() != 0) spdlog::debug("server-{} refused a held forward: {}", rank, h.error());
        continue;
      }
      auto it = awaiting_.find(AckKey{rank, h.origin(), h.seq()});
      if (it == awaiting_.end()) continue;  // ack "primary", or already released
      if (h.status() == 0 && --it->second.pieces > 0) continue;  // more pieces of it to answer
      std::shared_ptr<Request> request = std::move(it->second.request);
      awaiting_.erase(it);
      on_ack(request, h.status() == 0 ? absl::OkStatus()
                                      : absl::Status(static_cast<absl::StatusCode>(h.status()),
                                                     absl::StrCat("replica server-", rank, ": ", h.error())));
    }
  }
}

}  // namespace sparta
