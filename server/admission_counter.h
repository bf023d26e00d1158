// AdmissionCounter: approximate occurrence counts of the keys of one table
// shard that have no row yet, in fixed memory: a count-min sketch of
// kDepth rows of 8-bit saturating counters with conservative update (only
// the counters at the current minimum are raised).
//
// A count is never under the truth; it is over it only when every one of a
// key's kDepth counters is shared with other keys. With w counters per row
// and n distinct keys counted, the overshoot of a key is at most e*N/w
// (N = all occurrences counted) with probability 1 - e^-kDepth (98%); with
// conservative update it is far smaller in practice. So admission by count
// admits no key early unless the sketch is too small for the key space, and
// never admits one late. Counts saturate at 255.
//
// Deterministic: the same sequence of Add() gives the same counts on every
// replica. Not thread-safe: owned by the shard's executor.
#ifndef SPARTA_SERVER_ADMISSION_COUNTER_H_
#define SPARTA_SERVER_ADMISSION_COUNTER_H_

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "common/hash.h"

namespace sparta {

class AdmissionCounter {
 public:
  static constexpr int kDepth = 4;
  static constexpr uint32_t kMax = 255;

  // `bytes` of counters in all (at least kDepth * 16).
  explicit AdmissionCounter(size_t bytes)
      : width_(std::max<size_t>(16, bytes / kDepth)), counters_(width_ * kDepth, 0) {}

  // Adds `count` occurrences of `key`; returns its count before and after.
  std::pair<uint32_t, uint32_t> Add(uint64_t key, uint32_t count) {
    size_t slots[kDepth];
    uint32_t before = kMax;
    for (int d = 0; d < kDepth; ++d) {
      slots[d] = Slot(key, d);
      before = std::min<uint32_t>(before, counters_[slots[d]]);
    }
    const uint32_t after = std::min(kMax, before + count);
    for (int d = 0; d < kDepth; ++d) {
      if (counters_[slots[d]] < after) counters_[slots[d]] = static_cast<uint8_t>(after);
    }
    return {before, after};
  }

  uint32_t Estimate(uint64_t key) const {
    uint32_t n = kMax;
    for (int d = 0; d < kDepth; ++d) n = std::min<uint32_t>(n, counters_[Slot(key, d)]);
    return n;
  }

  size_t bytes() const { return counters_.size(); }

  // The counters as they are, and setting them to another counter's (a
  // new replica takes its primary's). Assign() fails, changing nothing,
  // unless `counters` is as large as this counter's.
  std::span<const uint8_t> counters() const { return counters_; }
  bool Assign(std::span<const uint8_t> counters) {
    if (counters.size() != counters_.size()) return false;
    std::copy(counters.begin(), counters.end(), counters_.begin());
    return true;
  }

 private:
  size_t Slot(uint64_t key, int row) const {
    const uint64_t h = Mix64(key ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(row + 1)));
    return static_cast<size_t>(row) * width_ + static_cast<size_t>(h % width_);
  }

  const size_t width_;
  std::vector<uint8_t> counters_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_ADMISSION_COUNTER_H_
