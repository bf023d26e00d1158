// RowCache: a bounded cache of one sparse table's rows, by feature key, for
// a front-end of a serving cluster (serving.shards > 0). Requests follow a
// long-tailed key distribution: the hot keys are answered from memory and
// only the rest are pulled from the servers.
//
// The rows of one model version never change, so a cached row is never
// stale; a newer version needs a new cache. Bounded by bytes (rows, keys
// and index together, measured per row); past it, CLOCK picks what goes: a
// hit marks a row, the hand clears marks and takes the first row unmarked,
// so rows read again since the hand last passed stay.
//
// Thread-safe: split into shards by key, each under its own mutex, so the
// compute threads rarely wait for each other.
#ifndef SPARTA_WORKER_SERVING_ROW_CACHE_H_
#define SPARTA_WORKER_SERVING_ROW_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace sparta {

class RowCache {
 public:
  // Rows of `dim` floats, within about `bytes` in all (0: nothing is cached).
  RowCache(uint32_t dim, uint64_t bytes);

  // Copies key's row into out[0..dim) if it is cached.
  bool Lookup(uint64_t key, float* out);
  // Caches key's row (a copy), making room if the cache is full.
  void Insert(uint64_t key, const float* row);

  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  uint64_t rows() const;
  // Rows the cache holds at most.
  uint64_t capacity() const { return uint64_t{rows_per_shard_} * kShards; }

 private:
  static constexpr size_t kShards = 64;
  struct Shard {
    std::mutex mu;
    absl::flat_hash_map<uint64_t, uint32_t> slot_of;  // key -> slot
    std::vector<uint64_t> keys;                       // by slot
    std::vector<float> rows;                          // by slot, dim floats each
    std::vector<uint8_t> marked;                      // by slot: read since the hand passed
    uint32_t hand = 0;
  };
  Shard& ShardOf(uint64_t key);

  const uint32_t dim_;
  uint32_t rows_per_shard_ = 0;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_ROW_CACHE_H_
