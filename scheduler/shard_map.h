// ShardMap: which server is the primary of each virtual shard and which
// servers hold its replicas, and how that changes when a server dies.
//
// Placement starts round-robin (primary s % servers, replicas on the next
// R-1 servers), so every server leads and follows the same number of
// shards. On a failure every shard the dead server led is taken over by the
// replica that has applied the most of it, and then each shard that is
// short of copies gets a new replica on the live server holding the fewest
// shards, to bring the replication factor back.
//
// Not thread-safe: owned by the scheduler's event loop.
#ifndef SPARTA_SCHEDULER_SHARD_MAP_H_
#define SPARTA_SCHEDULER_SHARD_MAP_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "sparta.pb.h"

namespace sparta {

class ShardMap {
 public:
  ShardMap(int num_shards, int servers, int replication_factor);

  // Removes `dead` from every shard. `applied(rank, shard)` says how many
  // update batches of `shard` server `rank` has applied (its last report).
  // Fails if a shard loses its last copy.
  absl::Status RemoveServer(uint32_t dead, const std::function<uint64_t(uint32_t rank, uint32_t shard)>& applied);

  // Adds replicas on `live` servers until every shard has R copies (or as
  // many as there are live servers). Returns how many replicas were added.
  int RestoreReplication(const std::vector<uint32_t>& live);

  // A fresh server joined: moves replicas onto it from the servers that
  // hold the most shards, until it holds about as many as they do.
  // Returns how many replicas moved.
  int AddServer(uint32_t rank, const std::vector<uint32_t>& live);

  void ToView(pb::ClusterView* view) const;
  // Takes the placement of a published view (a restarted scheduler).
  void FromView(const pb::ClusterView& view);
  const std::vector<uint32_t>& owners() const { return owner_; }
  const std::vector<uint32_t>& replicas(uint32_t shard) const { return replicas_[shard]; }

 private:
  const int replication_factor_;
  std::vector<uint32_t> owner_;
  std::vector<std::vector<uint32_t>> replicas_;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_SHARD_MAP_H_
