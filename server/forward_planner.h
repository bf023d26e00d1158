// ForwardPlanner: what a primary server forwards to its shards' replicas,
// when, and which pushes wait for it, decided without sockets. The
// Replicator owns the sockets and sends what the planner decides, in the
// order it decides it; everything replication means is here, so that it can
// be unit-tested message by message.
//
// For every push this server applies as primary, Forward() makes the
// REPLICATE messages for its shards' replicas: one per replica server,
// carrying the worker's (origin, seq) so that replicas and later primaries
// drop duplicates. Sent in the order the pushes were routed here (the order
// the local executors apply them), they keep every replica's rows identical
// to the primary's.
//
// When a shard gets a new replica, the replica first needs the shard's rows:
// HoldForSnapshot() holds the forwards of that shard to that server until
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
// `held_bytes_without_waiting` are held does a push wait for its held
// pieces to go out (ack "primary") or to be answered (ack "all"): that
// bounds what is held by the workers' windows (worker.max_inflight steps
// each), not by how long the shard takes to stream.
//
// With ack "all" a push is acknowledged to the worker only when every live
// replica has answered every piece of its forward; a replica that dies
// counts as having acknowledged (the scheduler has removed it from the
// shard). A replica that refuses a forward because it knows a newer view
// means this server is a stale primary: the push is failed back to the
// worker, which resends it to the shard's current primary.
//
// Not thread-safe: owned by the Replicator, on the server's I/O thread.
#ifndef SPARTA_SERVER_FORWARD_PLANNER_H_
#define SPARTA_SERVER_FORWARD_PLANNER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include <zmq.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/shard_view.h"
#include "server/request.h"
#include "sparta.pb.h"

namespace sparta {

class ForwardPlanner {
 public:
  // A message for a replica server (by rank), to send as it is.
  struct Send {
    uint32_t peer = 0;
    pb::Header header;
    std::vector<zmq::message_t> frames;  // keys, values[, counts]
  };
  // An acknowledgement a push was waiting for, with what its replica said.
  struct Ack {
    std::shared_ptr<Request> request;
    absl::Status status;
  };
  // What a call decided: messages to send (in this order), then pushes to
  // acknowledge.
  struct Decisions {
    std::vector<Send> sends;
    std::vector<Ack> acks;
  };

  ForwardPlanner(uint32_t self_id, bool ack_all, size_t held_bytes_without_waiting);

  // The shard map forwards are planned by.
  void SetShards(const ShardView& shards) { shards_ = shards; }
  const ShardView& shards() const { return shards_; }

  // `peer` is a live replica server from now on, starting from nothing: what
  // was held for a server under that rank before is dropped, and the pushes
  // that waited for it are acknowledged (a new server under a rank gets
  // the shards it replicates by snapshot).
  void Connect(uint32_t peer, Decisions* out);
  // `peer` is dead: besides what Connect() drops, the answers still owed by
  // it are no longer owed (the scheduler has taken it out of every shard).
  void Disconnect(uint32_t peer, Decisions* out);
  bool live(uint32_t peer) const { return peer < peers_.size() && peers_[peer].live; }

  // The forwards of a push applied here (with `only`, of those shards only).
  // Returns how many acknowledgements the push must wait for (0 with ack
  // "primary", unless too much is held).
  int Forward(const std::shared_ptr<Request>& request, uint64_t epoch, const std::vector<uint32_t>* only,
              Decisions* out);

  // `shard` streams to `peer`: its forwards wait for SnapshotDone().
  void HoldForSnapshot(uint32_t peer, uint32_t shard);
  // The stream of `shard` to `peer` has ended (sent whole, cancelled or
  // failed): the forwards held for it go, but for those that still wait on
  // another stream; pushes that waited for their held forward are
  // acknowledged.
  void SnapshotDone(uint32_t peer, uint32_t shard, Decisions* out);

  // An answer to a forward from `peer`: the acknowledgement it completes, if
  // any (none for a catch-up piece, an unknown or a partly answered push).
  std::optional<Ack> OnAnswer(uint32_t peer, const pb::Header& answer);

  // Forwards sent to replicas and not yet answered.
  size_t awaiting() const { return awaiting_.size(); }
  // The most bytes of forwards ever held for new replicas at once.
  size_t peak_held_bytes() const { return peak_held_bytes_; }

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
    Peer() = default;
    Peer(Peer&&) = default;
    Peer& operator=(Peer&&) = default;
    Peer(const Peer&) = delete;  // move-only, so that vector<Peer> grows by moving
    Peer& operator=(const Peer&) = delete;

    bool live = false;
    absl::flat_hash_map<uint32_t, int> streaming;    // shard -> its streams to this peer not ended
    std::deque<Outgoing> held;                       // in the order they were routed
    absl::flat_hash_map<uint32_t, int> held_shards;  // shard -> held messages that touch it
  };
  using AckKey = std::tuple<uint32_t, uint32_t, uint64_t>;  // (peer rank, origin, seq)

  // Whether shard `s`'s forwards to `p` wait: it streams there, or an
  // earlier piece of it is held.
  static bool Blocked(const Peer& p, uint32_t s) { return p.streaming.contains(s) || p.held_shards.contains(s); }
  // Moves the keys of `message` whose shards are Blocked() in `p` (with
  // their values and counts) into *held; false, with both untouched, if
  // there are none. With `p` holding nothing it costs nothing.
  bool SplitBlocked(const Peer& p, Outgoing* message, Outgoing* held) const;
  // Queues `message` for `p` behind the streams of its shards.
  void Hold(Peer& p, Outgoing message);
  // Sends what no stream holds any more, in order; the rest stays.
  void Flush(uint32_t peer, Decisions* out);
  // Drops what `peer` holds; the pushes that waited on it are acknowledged.
  void Release(Peer& peer, Decisions* out);
  static void Emit(uint32_t peer, Outgoing& message, Decisions* out);

  const uint32_t self_id_;
  const bool ack_all_;
  const size_t held_bytes_without_waiting_;
  ShardView shards_;
  std::vector<Peer> peers_;  // by rank
  absl::flat_hash_map<AckKey, Awaited> awaiting_;
  size_t held_bytes_ = 0;  // of all peers' held forwards
  size_t peak_held_bytes_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_FORWARD_PLANNER_H_
