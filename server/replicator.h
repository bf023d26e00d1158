// Replicator: a primary server's side of replication, on sockets. It keeps
// one DEALER socket per other server and sends on it what its
// ForwardPlanner decides (server/forward_planner.h says what replication
// means: which keys go to which replica, which wait for a snapshot, which
// pushes wait for which answers). Messages to one replica go over one
// socket in the order the planner made them, which is the order the pushes
// were routed here.
//
// Not thread-safe: owned by the server's I/O thread.
#ifndef SPARTA_SERVER_REPLICATOR_H_
#define SPARTA_SERVER_REPLICATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "common/config.h"
#include "common/shard_view.h"
#include "server/forward_planner.h"
#include "server/request.h"
#include "sparta.pb.h"

namespace sparta {

class Replicator {
 public:
  // Forwards held for new replicas beyond which pushes wait for them.
  static constexpr size_t kHeldBytesWithoutWaiting = size_t{64} << 20;
  using AckCallback = std::function<void(const std::shared_ptr<Request>&, const absl::Status&)>;

  // `cluster`: its auth settings secure the connections to peers.
  Replicator(zmq::context_t* context, const ClusterConfig& cluster, uint32_t self_id, int self_rank, bool ack_all,
             size_t held_bytes_without_waiting = kHeldBytesWithoutWaiting);

  // Adopts a cluster view: connects to new servers, drops dead ones (their
  // outstanding acks are given via `on_ack`). A server connected to now is
  // first sent `tables` (this server's, as CREATE_TABLE), ahead of any
  // forward or snapshot on the same socket: a server that joins a running
  // job, or replaces a dead one, got no table from the workers, and a
  // forward of a table it does not know would be refused (the push, applied
  // here, failed back to its worker, who resends it: to the shard's new
  // owner once the shard has moved, where it would be applied again).
  void UpdateView(const pb::ClusterView& view, const AckCallback& on_ack,
                  const std::vector<pb::TableSpec>& tables);

  // Sends the push to the replicas of its keys' shards (with `only`, of
  // those shards only). Returns how many acknowledgements the push must
  // wait for (0 with ack "primary").
  int Forward(const std::shared_ptr<Request>& request, uint64_t epoch, const std::vector<uint32_t>* only = nullptr);

  // `shard` streams to `peer`: its forwards wait for SnapshotDone().
  void HoldForSnapshot(uint32_t peer, uint32_t shard);
  void SendSnapshot(uint32_t peer, pb::Header header, std::vector<zmq::message_t> frames);
  // The stream of `shard` to `peer` has ended (sent whole, cancelled or
  // failed): the forwards held for it go, but for those that still wait on
  // another stream; pushes that waited for their held forward get `on_ack`.
  void SnapshotDone(uint32_t peer, uint32_t shard, const AckCallback& on_ack);
  // The most bytes of forwards ever held for new replicas at once.
  size_t peak_held_bytes() const { return planner_.peak_held_bytes(); }

  // The adopted view's shard map.
  const ShardView& shards() const { return planner_.shards(); }
  // Forwards sent to replicas and not yet acknowledged.
  size_t awaiting() const { return planner_.awaiting(); }

  // Poll items for the peer sockets (appended), and reading what they got:
  // acknowledgements of forwards go to `on_ack`, of snapshot parts to
  // `on_snapshot_ack`.
  void AddPollItems(std::vector<zmq::pollitem_t>* items);
  void ReceiveAcks(const AckCallback& on_ack, const std::function<void(const pb::Header&)>& on_snapshot_ack);

 private:
  struct Peer {
    pb::NodeInfo info;
    std::unique_ptr<zmq::socket_t> socket;  // none: not live
  };
  // Sends what the planner decided, then gives the acknowledgements.
  void Carry(ForwardPlanner::Decisions decisions, const AckCallback& on_ack);

  zmq::context_t* const context_;
  const ClusterConfig cluster_;
  const uint32_t self_id_;
  const int self_rank_;
  ForwardPlanner planner_;
  std::vector<Peer> peers_;  // by rank
};

}  // namespace sparta

#endif  // SPARTA_SERVER_REPLICATOR_H_
