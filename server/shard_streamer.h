// ShardStreamer: sends shards to new replicas in bounded chunks, one shard
// after another, on its own thread.
//
// A shard of a large table is GBs, most of it in the cold tier: copying it
// whole into messages at once would need that much memory on both sides
// (and a ZeroMQ queue of that size), which is what server.memory_limit must
// prevent. So a shard goes as a stream: the rows are read from the RocksDB
// snapshot taken at the cut (ShardCut), in key order, in chunks of at most
// kChunkBytes, and at most kWindowBytes of chunks (of all streams together)
// are sent and not yet acknowledged (SHARD_SNAPSHOT_ACK: the replica's
// executor has loaded them). Each side holds O(kWindowBytes) of the
// streams, and the shard's executor is busy only for the cut, not for the
// copy. The window is in bytes, not chunks, so that many small shards
// (one small chunk each) share one round trip.
//
// Streams go no faster than `bytes_per_second` (server.stream_rate), all
// together: a stream is work for this server's CPU and the replica's, and
// the network's, which training shares; unpaced, streams slowed training to
// a tenth while they ran and stretched its steps past 100 ms.
//
// The end of a shard (kEnd) needs no acknowledgement: the replica loads a
// shard's parts in order on one executor and marks the shard whole behind
// them, and the forwards held back for it follow it on the same socket.
//
// Chunks are posted to `out` for the I/O thread, which owns the sockets;
// the I/O thread reports acknowledgements with Acknowledged() and stops
// streams whose replica left the shard with Cancel().
//
// Thread-safe: every public method may be called from any thread.
#ifndef SPARTA_SERVER_SHARD_STREAMER_H_
#define SPARTA_SERVER_SHARD_STREAMER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "common/mailbox.h"
#include "server/row_store.h"
#include "server/shard_snapshot.h"

namespace sparta {

class ShardStreamer {
 public:
  static constexpr size_t kChunkBytes = 1 << 20;
  static constexpr size_t kWindowBytes = 4 * kChunkBytes;
  static constexpr size_t kWindowChunks = 256;

  // `store` (may be null: cuts then carry their rows) outlives this.
  // `bytes_per_second` 0: no limit.
  ShardStreamer(RowStore* store, Mailbox<SnapshotChunk>* out, uint64_t bytes_per_second = 0);
  ~ShardStreamer();  // stops: a stream in progress ends unfinished
  ShardStreamer(const ShardStreamer&) = delete;
  ShardStreamer& operator=(const ShardStreamer&) = delete;

  // Queues the shard for streaming, after those queued before.
  void Stream(ShardCut cut);

  // The replica has loaded a part of `stream` (ok), or refused it: the
  // stream then stops, with kCancelled when the replica is past the
  // stream's view (Aborted), else with kFailed.
  void Acknowledged(uint64_t stream, const absl::Status& status);

  // Cancels the queued and running streams for which `stop(peer, shard)`
  // is true; each ends with a kCancelled chunk instead of kEnd.
  void Cancel(const std::function<bool(uint32_t peer, uint32_t shard)>& stop);

  // What was sent so far, and the most bytes ever sent and not yet
  // acknowledged (at most kWindowBytes, or one larger chunk).
  struct Totals {
    uint64_t parts = 0;
    uint64_t bytes = 0;
    size_t peak_unacknowledged_bytes = 0;
  };
  Totals totals() const;

 private:
  void Loop();
  // Streams one cut; false if it was cancelled.
  bool Send(ShardCut& cut, uint64_t stream);
  // Waits until the window has room, then posts `chunk`; false if its
  // stream was cancelled.
  bool Post(SnapshotChunk chunk);

  // A chunk sent and not yet acknowledged.
  struct InFlight {
    uint64_t stream;
    uint32_t peer, shard;
    size_t bytes;
  };

  RowStore* const store_;
  Mailbox<SnapshotChunk>* const out_;
  const uint64_t bytes_per_second_;
  // When the next chunk may go, by the rate (its predecessors' bytes).
  std::chrono::steady_clock::time_point next_send_;  // guarded by mu_
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ShardCut> queue_;      // guarded by mu_
  uint64_t next_stream_ = 1;        // guarded by mu_
  uint64_t current_ = 0;            // the stream being sent; guarded by mu_
  uint32_t current_peer_ = 0, current_shard_ = 0;
  std::deque<InFlight> unacknowledged_;  // guarded by mu_
  size_t unacknowledged_bytes_ = 0;
  Totals totals_;  // guarded by mu_
  bool cancel_current_ = false;
  bool current_failed_ = false;  // why it was cancelled: it broke
  bool stop_ = false;
  std::thread thread_;  // last: started once the rest is ready
};

}  // namespace sparta

#endif  // SPARTA_SERVER_SHARD_STREAMER_H_
