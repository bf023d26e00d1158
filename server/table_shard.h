// TableShard: the rows of one table that fall into one virtual shard.
// key -> row index in a flat hash map; rows (weights + optimizer state) in a
// RowArena. A row is created on first touch with its deterministic initial
// weights. Not thread-safe: each shard is owned by exactly one executor
// thread, which is why the update path needs no locks.
#ifndef SPARTA_SERVER_TABLE_SHARD_H_
#define SPARTA_SERVER_TABLE_SHARD_H_

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "server/initializer.h"
#include "server/optimizer.h"
#include "server/row_arena.h"
#include "sparta.pb.h"

namespace sparta {

class TableShard {
 public:
  // `spec` and `optimizer` must outlive the shard (the server's table
  // registry owns them for the life of the process).
  TableShard(const pb::TableSpec* spec, const Optimizer* optimizer)
      : spec_(spec), optimizer_(optimizer), arena_(spec->dim() + optimizer->StateFloats(spec->dim())) {}

  // Starts loading the hash-map slot of `key` into cache, so that a lookup
  // issued a few keys later does not stall on memory.
  void Prefetch(uint64_t key) const { index_.prefetch(key); }

  // The row of `key`, created if absent (then `*created` is incremented).
  float* FindOrCreate(uint64_t key, uint64_t* created) {
    auto [it, inserted] = index_.try_emplace(key, 0);
    if (!inserted) return arena_.row(it->second);
    ++*created;
    it->second = arena_.Allocate();
    float* row = arena_.row(it->second);
    InitializeWeights(spec_->initializer(), key, row, spec_->dim());
    optimizer_->InitState(row, spec_->dim());
    return row;
  }

  // The row of `key`, or nullptr (reads never create rows).
  const float* Find(uint64_t key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : arena_.row(it->second);
  }

  void Apply(float* row, const float* grad) const { optimizer_->Apply(row, grad, spec_->dim()); }

  uint32_t dim() const { return spec_->dim(); }
  size_t rows() const { return index_.size(); }
  size_t bytes() const { return arena_.bytes() + index_.capacity() * (sizeof(uint64_t) + sizeof(uint32_t) + 1); }
  uint32_t stride() const { return arena_.stride(); }

 private:
  const pb::TableSpec* const spec_;
  const Optimizer* const optimizer_;
  absl::flat_hash_map<uint64_t, uint32_t> index_;
  RowArena arena_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_TABLE_SHARD_H_
