// OrderByShard: the order in which to visit a request's keys shard by
// shard, as both ends of the data plane want them. A worker copies a
// request's keys into their messages in this order (KVClient::Send), and a
// server hands each executor its keys in it (RequestRouter::Plan), so that
// the executor's lookups stay within one shard's index and arena for a
// while and it reads gradients and writes pulled rows front to back.
//
// A stable counting sort: within a shard, keys keep their given order, so a
// key that comes twice in a request is still applied in the caller's order.
//
// A pure function: thread-safe, the caller owns every buffer.
#ifndef SPARTA_COMMON_SHARD_ORDER_H_
#define SPARTA_COMMON_SHARD_ORDER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sparta {

// Below this many keys a request (or an executor's task) keeps its given
// order: the misses that grouping saves do not pay for the counting pass.
inline constexpr size_t kOrderByShardAtLeast = 64;

// Sets *order to the indices of `shard_of` (each entry below num_shards),
// by shard and within a shard in index order. `*ends` is scratch the caller
// keeps between calls (one counter per shard, plus one); on return,
// (*ends)[s] is where shard s's indices end in *order.
void OrderByShard(std::span<const uint32_t> shard_of, uint32_t num_shards, std::vector<uint32_t>* ends,
                  std::vector<uint32_t>* order);

}  // namespace sparta

#endif  // SPARTA_COMMON_SHARD_ORDER_H_
