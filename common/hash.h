// Key hashing and the key -> virtual shard map. Pure functions; thread-safe.
//
// Keys are spread over 2^k virtual shards by a mixing hash so that a batch
// splits per server in one pass and whole shards can move between servers.
#ifndef SPARTA_COMMON_HASH_H_
#define SPARTA_COMMON_HASH_H_

#include <cstdint>

namespace sparta {

// The splitmix64 finalizer: a bijection on uint64 with full avalanche, so
// sequential or clustered keys land on unrelated shards.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Shard of `key` among 2^shard_bits shards: the top bits of the mixed key.
// shard_bits == 0 means a single shard.
inline uint32_t ShardOf(uint64_t key, int shard_bits) {
  return shard_bits == 0 ? 0 : static_cast<uint32_t>(Mix64(key) >> (64 - shard_bits));
}

// The key of a feature value within a field, used by the readers so that the
// same token in two fields gives two different keys.
inline uint64_t FeatureKey(uint32_t field, uint64_t value) {
  return Mix64(value ^ (static_cast<uint64_t>(field + 1) * 0x9e3779b97f4a7c15ULL));
}

}  // namespace sparta

#endif  // SPARTA_COMMON_HASH_H_
