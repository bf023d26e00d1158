#include "server/replicator.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/cluster_auth.h"
#include "common/socket_util.h"
#include "common/traffic_counters.h"

namespace sparta {

Replicator::Replicator(zmq::context_t* context, const ClusterConfig& cluster, uint32_t self_id, int self_rank,
                       bool ack_all)
    : context_(context), cluster_(cluster), self_id_(self_id), self_rank_(self_rank), ack_all_(ack_all) {}

void Replicator::UpdateView(const pb::ClusterView& view, const AckCallback& on_ack) {
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
        released.push_back(std::move(it->second));
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
      out.frames.push_back(FrameFromVector(ShardView::Gather<uint64_t>(keys.data(), mine, 1)));
      out.frames.push_back(FrameFromVector(ShardView::Gather<char>(request->message.frames[1].data(), mine, row_bytes)));
      if (!request->counts.empty()) {
        out.frames.push_back(FrameFromVector(ShardView::Gather<uint32_t>(request->counts.data(), mine, 1)));
      }
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
    if (ack_all_) {
      awaiting_[{peer, in.sender(), in.seq()}] = request;
      ++acks;
    } else if (peers_[peer].snapshots_pending > 0) {
      // Held back for a new replica: the push waits until its forward goes
      // out, which bounds what is held by the workers' windows.
      peers_[peer].held_for.push_back(request);
      ++acks;
    }
    Send(peer, std::move(out));
  }
  return acks;
}

void Replicator::Send(uint32_t peer, Outgoing message) {
  Peer& p = peers_[peer];
  if (p.snapshots_pending > 0) {
    held_bytes_ += TrafficCounters::FrameBytes(message.frames);
    peak_held_bytes_ = std::max(peak_held_bytes_, held_bytes_);
    p.held.push_back(std::move(message));
    return;
  }
  if (auto st = SendMessage(*p.socket, message.header, &message.frames); !st.ok()) {
    spdlog::warn("forward to server-{} not sent: {}", peer, st.message());
  }
}

void Replicator::HoldForSnapshot(uint32_t peer) {
  if (peer < peers_.size() && peers_[peer].socket) ++peers_[peer].snapshots_pending;
}

void Replicator::SendSnapshot(uint32_t peer, pb::Header header, std::vector<zmq::message_t> frames) {
  if (peer >= peers_.size() || !peers_[peer].socket) return;
  header.set_sender(self_id_);
  if (auto st = SendMessage(*peers_[peer].socket, header, &frames); !st.ok()) {
    spdlog::warn("snapshot to server-{} not sent: {}", peer, st.message());
  }
}

void Replicator::SnapshotDone(uint32_t peer, const AckCallback& on_ack) {
  if (peer >= peers_.size() || !peers_[peer].socket) return;
  Peer& p = peers_[peer];
  if (p.snapshots_pending > 0 && --p.snapshots_pending > 0) return;
  std::deque<Outgoing> held;
  held.swap(p.held);
  for (auto& message : held) {
    held_bytes_ -= TrafficCounters::FrameBytes(message.frames);
    Send(peer, std::move(message));
  }
  Release(p, on_ack);
}

void Replicator::Release(Peer& peer, const AckCallback& on_ack) {
  for (const auto& message : peer.held) held_bytes_ -= TrafficCounters::FrameBytes(message.frames);
  peer.held.clear();
  std::vector<std::shared_ptr<Request>> waiting;
  waiting.swap(peer.held_for);
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
      auto it = awaiting_.find(AckKey{rank, h.origin(), h.seq()});
      if (it == awaiting_.end()) continue;  // ack "primary", or already released
      std::shared_ptr<Request> request = std::move(it->second);
      awaiting_.erase(it);
      on_ack(request, h.status() == 0 ? absl::OkStatus()
                                      : absl::Status(static_cast<absl::StatusCode>(h.status()),
                                                     absl::StrCat("replica server-", rank, ": ", h.error())));
    }
  }
}

}  // namespace sparta
