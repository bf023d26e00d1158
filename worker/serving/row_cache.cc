#include "worker/serving/row_cache.h"

#include <cstring>

#include "common/hash.h"

namespace sparta {

RowCache::RowCache(uint32_t dim, uint64_t bytes) : dim_(dim), shards_(new Shard[kShards]) {
  // Per row: its floats, its key twice (slot and index), the index's
  // control byte and slack (a flat hash map at most 7/8 full), its mark.
  const uint64_t per_row = uint64_t{dim} * sizeof(float) + 2 * sizeof(uint64_t) + sizeof(uint32_t) + 8 + 1;
  rows_per_shard_ = static_cast<uint32_t>(bytes / per_row / kShards);
}

RowCache::Shard& RowCache::ShardOf(uint64_t key) {
  // The low bits: the servers' shard map takes the high ones (ShardOf), so
  // keys that one server holds would otherwise crowd into few cache shards.
  return shards_[Mix64(key) % kShards];
}

bool RowCache::Lookup(uint64_t key, float* out) {
  Shard& s = ShardOf(key);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (auto it = s.slot_of.find(key); it != s.slot_of.end()) {
      std::memcpy(out, s.rows.data() + size_t{it->second} * dim_, dim_ * sizeof(float));
      s.marked[it->second] = 1;
      hits_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void RowCache::Insert(uint64_t key, const float* row) {
  if (rows_per_shard_ == 0) return;
  Shard& s = ShardOf(key);
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.slot_of.contains(key)) return;  // another thread pulled it too
  uint32_t slot;
  if (s.keys.size() < rows_per_shard_) {
    slot = static_cast<uint32_t>(s.keys.size());
    s.keys.push_back(key);
    s.rows.resize(s.rows.size() + dim_);
    s.marked.push_back(0);
  } else {
    // At most two turns: the first clears every mark it passes.
    while (s.marked[s.hand]) {
      s.marked[s.hand] = 0;
      s.hand = (s.hand + 1) % rows_per_shard_;
    }
    slot = s.hand;
    s.hand = (s.hand + 1) % rows_per_shard_;
    s.slot_of.erase(s.keys[slot]);
    s.keys[slot] = key;
    s.marked[slot] = 0;
  }
  s.slot_of.emplace(key, slot);
  std::memcpy(s.rows.data() + size_t{slot} * dim_, row, dim_ * sizeof(float));
}

uint64_t RowCache::rows() const {
  uint64_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard<std::mutex> lock(shards_[i].mu);
    n += shards_[i].keys.size();
  }
  return n;
}

}  // namespace sparta
