// Replicator: a primary server's side of replication.
//
// For every push this server applies as primary, Forward() sends the keys
// and gradients of each shard to that shard's replicas (REPLICATE, one
// message per replica server, carrying the worker's (sender, seq) so that
// replicas and later primaries drop duplicates). Messages to one replica go
// over one DEALER socket in the order the pushes were routed here, which is
// the order the local executors apply them, so replicas apply every shard's
// updates in the primary's order and hold identical rows.
//
// When a shard gets a new replica, the replica first needs the shard's rows:
// HoldForSnapshot() queues the forwards of that shard to that server until
// SnapshotDone(), so that nothing routed after the snapshot reaches it
// before the snapshot. Only that shard's keys wait: a forward is split,
// the keys of held shards (streaming, or with an earlier piece held) held
// and the rest sent, so each shard's updates reach the replica in the
// primary's order and no other shard waits. (A drain or a join streams
// many shards to one server one after another, and a worker's batch
// touches nearly every shard: held whole, every push waited for the last
// stream, and a moving primary could not hand its shard off before.) The
// pieces of one push carry its (origin, seq); replicas filter duplicates
// per shard.
//
// The push does not wait for its held pieces (with ack "all" either): a copy
// still catching up is no copy yet, failover never promotes it, and the
// held pieces reach it before the mark that makes it whole (the server
// sends them at the stream's end, then the mark), so a whole copy lacks
// none of them. Such a piece is marked `catch_up`, and so is its answer,
// which the push does not count. Only once more than
// kHeldBytesWithoutWaiting are held does a push wait for its held pieces
// to go out (ack "primary") or to be answered (ack "all"): that bounds
// what is held by the workers' windows.
// A push with a held forward is not acknowledged to its worker before the
// forward goes out (with ack "primary" too), so what is held is bounded by
// the workers' windows (worker.max_inflight steps each), not by how long
// the shard takes to stream.
//
// With storage.ack "all" a push is acknowledged to the worker only when every
// live replica has acknowledged it; a replica that dies counts as having
// acknowledged (the scheduler has removed it from the shard). A replica that
// refuses a forward because it knows a newer view means this server is a
// stale primary; the push is failed back to the worker, which resends it
// to the shard's current primary.
//
// Not thread-safe: owned by the server's I/O thread.
#ifndef SPARTA_SERVER_REPLICATOR_H_
#define SPARTA_SERVER_REPLICATOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <tuple>
#include <vector>

#include <zmq.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/config.h"
#include "common/shard_view.h"
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
  size_t peak_held_bytes() const { return peak_held_bytes_; }

  // The adopted view's shard map.
  const ShardView& shards() const { return shards_; }
  // Forwards sent to replicas and not yet acknowledged.
  size_t awaiting() const { return awaiting_.size(); }

  // Poll items for the peer sockets (appended), and reading what they got:
  // acknowledgements of forwards go to `on_ack`, of snapshot parts to
  // `on_snapshot_ack`.
  void AddPollItems(std::vector<zmq::pollitem_t>* items);
  void ReceiveAcks(const AckCallback& on_ack, const std::function<void(const pb::Header&)>& on_snapshot_ack);

 private:
  struct Outgoing {
    pb::Header header;
    std::vector<zmq::message_t> frames;  // keys, values[, counts]
    std::vector<uint32_t> shards;        // of its keys, sorted (held messages only)
    // ack "primary": the push that waits for this (held) forward to go out.
    std::shared_ptr<Request> waiter;
    // ack "all": the push waits for its answer (not for a catch_up piece).
    bool awaited = false;
  };
  // A forward sent to replicas and not yet answered: with ack "all" the push
  // is answered once every piece of its forward to each replica is.
  struct Awaited {
    std::shared_ptr<Request> request;
    int pieces = 0;
  };
  struct Peer {
    pb::NodeInfo info;
    std::unique_ptr<zmq::socket_t> socket;
    absl::flat_hash_map<uint32_t, int> streaming;  // shard -> its streams to this peer not ended
    std::deque<Outgoing> held;                     // in the order they were routed
    absl::flat_hash_map<uint32_t, int> held_shards;  // shard -> held messages that touch it
  };
  // Whether shard `s`'s forwards to `p` wait: it streams there, or an
  // earlier piece of it is held.
  static bool Blocked(const Peer& p, uint32_t s) { return p.streaming.contains(s) || p.held_shards.contains(s); }
  // Moves the keys of `message` whose shards are Blocked() in `p` (with
  // their values and counts) into *held; false, with both untouched, if
  // there are none. With `p` holding nothing it costs nothing.
  bool SplitBlocked(const Peer& p, Outgoing* message, Outgoing* held) const;
  // Queues `message` for `peer` behind the streams of its shards.
  void Hold(Peer& p, Outgoing message);
  // Sends what no stream holds any more, in order; the rest stays.
  void Flush(uint32_t peer, const AckCallback& on_ack);
  // Acknowledges the pushes that waited on `peer`'s held forwards, and
  // forgets the forwards still held (for a peer that is gone).
  void Release(Peer& peer, const AckCallback& on_ack);
  using AckKey = std::tuple<uint32_t, uint32_t, uint64_t>;  // (peer rank, origin, seq)

  void SendNow(Peer& p, uint32_t peer, Outgoing& message);

  zmq::context_t* const context_;
  const ClusterConfig cluster_;
  const uint32_t self_id_;
  const int self_rank_;
  const bool ack_all_;
  const size_t held_bytes_without_waiting_;
  ShardView shards_;
  std::vector<Peer> peers_;                      // by rank; no socket = not live
  absl::flat_hash_map<AckKey, Awaited> awaiting_;
  size_t held_bytes_ = 0;  // of all peers' held forwards
  size_t peak_held_bytes_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_REPLICATOR_H_
