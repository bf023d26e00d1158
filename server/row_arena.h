// RowArena: fixed-stride rows of floats in chunks, addressed by a dense
// uint32 index. One allocation per chunk instead of one per row, no per-row
// header, and the arena never moves a row (so a pointer stays valid while
// its index lives; an owner that compacts copies rows itself). Not thread-safe: owned by one shard executor.
//
// Chunks start small and double up to ~1 MiB (or `max_chunk_bytes`), then
// stay at that size: a server holds (shards x tables) arenas, most of them
// small, so a fixed 1 MiB first chunk would reserve gigabytes before any row
// exists. Free() returns a row's index for reuse by a later Allocate() (rows
// evicted to the cold tier); the memory itself stays with the arena until
// Truncate() gives back what lies above the rows still held.
#ifndef SPARTA_SERVER_ROW_ARENA_H_
#define SPARTA_SERVER_ROW_ARENA_H_

#include <algorithm>
#include <bit>
#include <cstdint>
#include <memory>
#include <vector>

namespace sparta {

class RowArena {
 public:
  static constexpr size_t kFirstRows = 16;
  static constexpr size_t kMaxChunkBytes = 1 << 20;

  explicit RowArena(uint32_t stride_floats, size_t max_chunk_bytes = kMaxChunkBytes)
      : stride_(stride_floats),
        // Both powers of two, so index -> (chunk, slot) is shifts and masks.
        max_rows_(std::bit_floor(std::max<size_t>(kFirstRows, (max_chunk_bytes / sizeof(float)) / stride_floats))),
        growing_rows_(max_rows_ - kFirstRows),
        growing_chunks_(std::bit_width(max_rows_ / kFirstRows) - 1) {}

  uint32_t Allocate() {
    if (!free_.empty()) {
      const uint32_t index = free_.back();
      free_.pop_back();
      return index;
    }
    const Slot s = Locate(size_);
    if (s.chunk == chunks_.size()) {
      chunks_.emplace_back(new float[size_t{ChunkRows(s.chunk)} * stride_]);
      allocated_bytes_ += size_t{ChunkRows(s.chunk)} * stride_ * sizeof(float);
    }
    return size_++;
  }

  // `index` holds no row any more; a later Allocate() may return it.
  void Free(uint32_t index) { free_.push_back(index); }

  // Forgets every index from `size` on and frees the chunks that hold only
  // such indices. Every index below `size` holds a row: the caller moved
  // the rows it keeps into the free ones (so nothing is free any more). For
  // an arena whose rows went cold: the memory they held goes back.
  void Truncate(uint32_t size) {
    if (size >= size_) return;
    size_ = size;
    std::vector<uint32_t>().swap(free_);
    const size_t keep = size == 0 ? 0 : Locate(size - 1).chunk + 1;
    for (size_t c = keep; c < chunks_.size(); ++c) allocated_bytes_ -= size_t{ChunkRows(c)} * stride_ * sizeof(float);
    chunks_.resize(keep);
  }
  // Indices below size() that hold no row.
  size_t free_count() const { return free_.size(); }

  float* row(uint32_t index) {
    const Slot s = Locate(index);
    return chunks_[s.chunk].get() + size_t{s.offset} * stride_;
  }
  const float* row(uint32_t index) const { return const_cast<RowArena*>(this)->row(index); }

  // Indices handed out so far, freed ones included: every index is < size().
  uint32_t size() const { return size_; }
  uint32_t stride() const { return stride_; }
  size_t bytes() const { return allocated_bytes_ + free_.capacity() * sizeof(uint32_t); }

 private:
  struct Slot {
    size_t chunk;
    uint32_t offset;
  };

  size_t ChunkRows(size_t chunk) const {
    return chunk < growing_chunks_ ? kFirstRows << chunk : max_rows_;
  }

  // Chunk c < growing_chunks_ holds indices [16 (2^c - 1), 16 (2^(c+1) - 1));
  // after those, every chunk holds max_rows_.
  Slot Locate(uint32_t index) const {
    if (index < growing_rows_) {
      const size_t c = std::bit_width(index / kFirstRows + 1) - 1;
      return {c, static_cast<uint32_t>(index - kFirstRows * ((size_t{1} << c) - 1))};
    }
    const size_t past = index - growing_rows_;
    return {growing_chunks_ + past / max_rows_, static_cast<uint32_t>(past % max_rows_)};
  }

  const uint32_t stride_;
  const size_t max_rows_;
  const size_t growing_rows_;
  const size_t growing_chunks_;
  uint32_t size_ = 0;
  size_t allocated_bytes_ = 0;
  std::vector<std::unique_ptr<float[]>> chunks_;
  std::vector<uint32_t> free_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_ROW_ARENA_H_
