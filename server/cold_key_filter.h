// ColdKeyFilter: the keys of one table shard that may have a row in the
// cold tier, so that a key seen for the first time costs no store lookup.
//
// Most misses of a long-tailed key stream are keys that were never seen:
// RocksDB answers "not found" for them only after searching its memtables
// and probing a Bloom filter per level (perf: ~5 us a key, most of a tiered
// run's time), where this answers in one cache line. It is a chain of
// blocked Bloom filters (each key's bits in one 64-byte block), every one
// twice the capacity of the one before, because the number of cold keys is
// not known in advance and a Bloom filter cannot be resized without its
// keys. About 1.5 bytes per key. False positives are about 0.5% per full
// generation and add up (measured 2.6% at 300k keys, 7 generations; each
// 10x more keys adds about 1.7%); one only costs the lookup that would have
// been made anyway. There are no false negatives. Keys deleted from the store (expired) stay
// in the filter: again a lookup, never a wrong answer.
//
// Not thread-safe: owned by the shard's executor thread, like TableShard.
#ifndef SPARTA_SERVER_COLD_KEY_FILTER_H_
#define SPARTA_SERVER_COLD_KEY_FILTER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/hash.h"

namespace sparta {

class ColdKeyFilter {
 public:
  // Remembers `key` (a no-op if it may already be there, so that keys going
  // cold again and again do not grow the filter).
  void Add(uint64_t key) {
    const uint64_t h = Hash(key);
    for (const Generation& g : generations_) {
      if (g.MayContain(h)) return;
    }
    if (generations_.empty() || generations_.back().count >= generations_.back().capacity) {
      const size_t capacity = generations_.empty() ? kFirstCapacity : 2 * generations_.back().capacity;
      generations_.emplace_back(capacity);
      bytes_ += generations_.back().blocks.size() * sizeof(Block);
    }
    generations_.back().Add(h);
  }

  // False only if `key` was never added.
  bool MayContain(uint64_t key) const {
    if (generations_.empty()) return false;
    const uint64_t h = Hash(key);
    for (const Generation& g : generations_) {
      if (g.MayContain(h)) return true;
    }
    return false;
  }

  size_t bytes() const { return bytes_; }

 private:
  static constexpr size_t kFirstCapacity = 4096;
  static constexpr size_t kBitsPerKey = 12;
  static constexpr int kProbes = 6;  // 9 bits each from one 64-bit word

  struct Block {
    uint64_t words[8];
  };

  struct Generation {
    explicit Generation(size_t keys)
        : capacity(keys), blocks((keys * kBitsPerKey + 511) / 512, Block{}) {}

    // The block from the high half of the hash, the bits from a remix of it.
    const Block& BlockOf(uint64_t h) const { return blocks[((h >> 32) * blocks.size()) >> 32]; }
    Block& BlockOf(uint64_t h) { return blocks[((h >> 32) * blocks.size()) >> 32]; }

    void Add(uint64_t h) {
      Block& b = BlockOf(h);
      uint64_t bits = Mix64(h);
      for (int i = 0; i < kProbes; ++i, bits >>= 9) b.words[(bits >> 6) & 7] |= uint64_t{1} << (bits & 63);
      ++count;
    }

    bool MayContain(uint64_t h) const {
      const Block& b = BlockOf(h);
      uint64_t bits = Mix64(h);
      for (int i = 0; i < kProbes; ++i, bits >>= 9) {
        if (!(b.words[(bits >> 6) & 7] & (uint64_t{1} << (bits & 63)))) return false;
      }
      return true;
    }

    size_t capacity;
    size_t count = 0;
    std::vector<Block> blocks;
  };

  // Keys of one shard share the top bits of Mix64(key) (that is how they
  // were sharded): hash with a different seed.
  static uint64_t Hash(uint64_t key) { return Mix64(key ^ 0x6a09e667f3bcc909ULL); }

  std::vector<Generation> generations_;
  size_t bytes_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_COLD_KEY_FILTER_H_
