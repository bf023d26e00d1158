// ShardView: the shard map of one cluster view, as every daemon reads it:
// the view's epoch, the server that leads the shard of a key, the servers
// that replicate it, and a request's keys grouped by the server they go to.
//
// Workers split requests by primary (KVClient), and re-split them when a
// view changes; primaries split pushes by replica (Replicator); servers check
// that they serve a key's shard. All of them read the view through this one
// type, made once per view from the ClusterView message.
//
// Immutable once made: thread-safe to read, cheap to share by pointer.
#ifndef SPARTA_COMMON_SHARD_VIEW_H_
#define SPARTA_COMMON_SHARD_VIEW_H_

#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "common/hash.h"
#include "sparta.pb.h"

namespace sparta {

class ShardView {
 public:
  ShardView() = default;  // epoch 0, no shards
  explicit ShardView(const pb::ClusterView& view);

  uint64_t epoch() const { return epoch_; }
  uint32_t num_shards() const { return static_cast<uint32_t>(owners_.size()); }
  uint32_t shard_of(uint64_t key) const { return ShardOf(key, shard_bits_); }
  // The rank of the server that leads `shard`, or of `key`'s shard.
  uint32_t owner(uint32_t shard) const { return owners_[shard]; }
  uint32_t owner_of_key(uint64_t key) const { return owners_[shard_of(key)]; }
  const std::vector<uint32_t>& owners() const { return owners_; }
  // One past the highest server rank the map names (servers may join past
  // cluster.servers): the size of anything indexed by rank.
  uint32_t rank_bound() const { return owners_.empty() ? 0 : max_rank_ + 1; }
  // The ranks that replicate `shard`, its primary excluded.
  const std::vector<uint32_t>& replicas(uint32_t shard) const { return replicas_[shard]; }
  bool any_replicas() const { return any_replicas_; }
  // Whether the primary of `shard` is handing it to a replica (a live move):
  // it parks requests for it until the view that switches the primary.
  bool handing_off(uint32_t shard) const { return !handing_off_.empty() && handing_off_[shard]; }
  bool IsReplica(uint32_t shard, uint32_t rank) const;
  // Whether `rank` leads or replicates `shard`.
  bool Holds(uint32_t shard, uint32_t rank) const { return owner(shard) == rank || IsReplica(shard, rank); }
  // The rank of the live server whose node id is `id`, or -1 (not a live
  // server of this view).
  int64_t server_rank(uint32_t id) const;

  // A request's keys grouped by destination server. When every key goes to
  // the same servers, `whole_to` lists them and the request goes to each as
  // it is, without being split (zero-copy); else positions[d] lists, in
  // request order, the positions of the keys that go to server d.
  struct Groups {
    std::vector<uint32_t> whole_to;
    std::vector<std::vector<uint32_t>> positions;  // by server rank
    bool whole() const { return !whole_to.empty(); }
  };
  // By primary: each key goes to one server.
  Groups ByOwner(std::span<const uint64_t> keys) const;
  // By replica: each key goes to every replica of its shard (with `only`,
  // the keys of those shards only, always split).
  Groups ByReplica(std::span<const uint64_t> keys, const std::vector<uint32_t>* only = nullptr) const;

  // The elements of `positions`, `per_key` elements (of `element_bytes`
  // bytes) per position, gathered from `data` into one buffer.
  template <class T>
  static std::vector<T> Gather(const void* data, std::span<const uint32_t> positions, size_t per_key) {
    std::vector<T> out(positions.size() * per_key);
    const T* from = static_cast<const T*>(data);
    for (size_t j = 0; j < positions.size(); ++j) {
      std::memcpy(out.data() + j * per_key, from + size_t{positions[j]} * per_key, per_key * sizeof(T));
    }
    return out;
  }

 private:
  uint64_t epoch_ = 0;
  int shard_bits_ = 0;
  uint32_t max_rank_ = 0;  // the highest rank in the map, for sizing groups
  std::vector<uint32_t> owners_;
  std::vector<std::vector<uint32_t>> replicas_;
  bool any_replicas_ = false;
  std::vector<bool> handing_off_;  // by shard; empty when none is
  std::vector<std::pair<uint32_t, uint32_t>> servers_;  // (node id, rank), a handful
};

}  // namespace sparta

#endif  // SPARTA_COMMON_SHARD_VIEW_H_
