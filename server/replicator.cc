#include "server/replicator.h"

#include "absl/strings/str_cat.h"
#include "common/cluster_auth.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/socket_util.h"

namespace sparta {

Replicator::Replicator(zmq::context_t* context, const ClusterConfig& cluster, uint32_t self_id, int self_rank,
                       bool ack_all, size_t held_bytes_without_waiting)
    : context_(context),
      cluster_(cluster),
      self_id_(self_id),
      self_rank_(self_rank),
      planner_(self_id, ack_all, held_bytes_without_waiting) {}

void Replicator::UpdateView(const pb::ClusterView& view, const AckCallback& on_ack,
                            const std::vector<pb::TableSpec>& tables) {
  planner_.SetShards(ShardView(view));
  ForwardPlanner::Decisions decisions;
  if (peers_.size() <= static_cast<size_t>(self_rank_)) peers_.resize(self_rank_ + 1);
  for (const pb::NodeInfo& node : view.nodes()) {
    if (node.role() != pb::SERVER || node.rank() == self_rank_) continue;
    if (peers_.size() <= static_cast<size_t>(node.rank())) peers_.resize(node.rank() + 1);
    Peer& peer = peers_[node.rank()];
    if (peer.socket && peer.info.id() == node.id()) continue;
    planner_.Connect(node.rank(), &decisions);  // a new server under this rank starts from nothing
    peer.info = node;
    peer.socket = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::dealer);
    ConfigureSocket(*peer.socket);
    SecureClientSocket(*peer.socket, cluster_);
    const std::string endpoint = DataEndpoint(node, cluster_.local_transport_mode);
    peer.socket->connect(endpoint);
    spdlog::info("replicas on server-{} at {}", node.rank(), endpoint);
    for (const pb::TableSpec& spec : tables) {
      // Answered like any request; the planner awaits no answer of seq 0.
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
    planner_.Disconnect(dead, &decisions);
    peers_[dead] = Peer();
  }
  Carry(std::move(decisions), on_ack);
}

int Replicator::Forward(const std::shared_ptr<Request>& request, uint64_t epoch, const std::vector<uint32_t>* only) {
  ForwardPlanner::Decisions decisions;
  const int acks = planner_.Forward(request, epoch, only, &decisions);
  Carry(std::move(decisions), nullptr);  // a forward acknowledges nothing
  return acks;
}

void Replicator::Carry(ForwardPlanner::Decisions decisions, const AckCallback& on_ack) {
  for (ForwardPlanner::Send& send : decisions.sends) {
    if (send.peer >= peers_.size() || !peers_[send.peer].socket) continue;
    if (auto st = SendMessage(*peers_[send.peer].socket, send.header, &send.frames); !st.ok()) {
      spdlog::warn("forward to server-{} not sent: {}", send.peer, st.message());
    }
  }
  for (const ForwardPlanner::Ack& ack : decisions.acks) on_ack(ack.request, ack.status);
}

void Replicator::HoldForSnapshot(uint32_t peer, uint32_t shard) { planner_.HoldForSnapshot(peer, shard); }

void Replicator::SendSnapshot(uint32_t peer, pb::Header header, std::vector<zmq::message_t> frames) {
  if (peer >= peers_.size() || !peers_[peer].socket) return;
  header.set_sender(self_id_);
  if (auto st = SendMessage(*peers_[peer].socket, header, &frames); !st.ok()) {
    spdlog::warn("snapshot to server-{} not sent: {}", peer, st.message());
  }
}

void Replicator::SnapshotDone(uint32_t peer, uint32_t shard, const AckCallback& on_ack) {
  ForwardPlanner::Decisions decisions;
  planner_.SnapshotDone(peer, shard, &decisions);
  Carry(std::move(decisions), on_ack);
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
      if (auto ack = planner_.OnAnswer(rank, h)) on_ack(ack->request, ack->status);
    }
  }
}

}  // namespace sparta
