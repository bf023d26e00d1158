// RowArena: fixed-stride rows of floats in large chunks, addressed by a dense
// uint32 index. One allocation per ~1 MiB chunk instead of one per row, no
// per-row header, and rows never move once created (so a pointer stays valid
// while its index lives). Not thread-safe: owned by one shard executor.
#ifndef SPARTA_SERVER_ROW_ARENA_H_
#define SPARTA_SERVER_ROW_ARENA_H_

#include <bit>
#include <cstdint>
#include <memory>
#include <vector>

namespace sparta {

class RowArena {
 public:
  explicit RowArena(uint32_t stride_floats)
      : stride_(stride_floats),
        // A power of two rows per chunk so that index -> (chunk, slot) is a
        // shift and a mask.
        shift_(std::bit_width(std::max<uint32_t>(1, (kChunkBytes / sizeof(float)) / stride_floats)) - 1),
        mask_((uint32_t{1} << shift_) - 1) {}

  uint32_t Allocate() {
    if ((size_ & mask_) == 0 && (size_ >> shift_) == chunks_.size()) {
      chunks_.emplace_back(new float[(size_t{mask_} + 1) * stride_]);
    }
    return size_++;
  }

  float* row(uint32_t index) { return chunks_[index >> shift_].get() + size_t{index & mask_} * stride_; }
  const float* row(uint32_t index) const {
    return chunks_[index >> shift_].get() + size_t{index & mask_} * stride_;
  }

  uint32_t size() const { return size_; }
  uint32_t stride() const { return stride_; }
  size_t bytes() const { return chunks_.size() * (size_t{mask_} + 1) * stride_ * sizeof(float); }

 private:
  static constexpr size_t kChunkBytes = 1 << 20;
  const uint32_t stride_;
  const uint32_t shift_;
  const uint32_t mask_;
  uint32_t size_ = 0;
  std::vector<std::unique_ptr<float[]>> chunks_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_ROW_ARENA_H_
