// StagingLayout: places the arrays of one step side by side in a single
// buffer, each aligned for the device, so that a step's input crosses PCIe
// in one copy and its output in one copy, instead of a dozen small ones
// that would each pay the copy's launch latency.
//
// Not thread-safe; a plain value.
#ifndef SPARTA_WORKER_COMPUTE_STAGING_LAYOUT_H_
#define SPARTA_WORKER_COMPUTE_STAGING_LAYOUT_H_

#include <cstddef>

namespace sparta {

class StagingLayout {
 public:
  // cudaMalloc's own alignment; enough for any element type and for
  // coalesced loads at the start of every array.
  static constexpr size_t kAlignment = 256;

  // Reserves `bytes`; returns the offset of the reserved range.
  size_t Add(size_t bytes) {
    const size_t at = size_;
    size_ = (size_ + bytes + kAlignment - 1) / kAlignment * kAlignment;
    return at;
  }
  size_t size() const { return size_; }

 private:
  size_t size_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_STAGING_LAYOUT_H_
