// TableShard: the rows of one table that fall into one virtual shard.
// key -> row index in a flat hash map; rows (weights + optimizer state) in a
// RowArena. A row is created on first touch with its deterministic initial
// weights. Rows changed since the last Persist() are remembered (one bit
// per row plus their keys), so a checkpoint writes only what changed.
// Not thread-safe: each shard is owned by exactly one executor thread, which
// is why the update path needs no locks.
#ifndef SPARTA_SERVER_TABLE_SHARD_H_
#define SPARTA_SERVER_TABLE_SHARD_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "server/initializer.h"
#include "server/optimizer.h"
#include "server/row_arena.h"
#include "server/row_store.h"
#include "sparta.pb.h"

namespace sparta {

class TableShard {
 public:
  // `spec` and `optimizer` must outlive the shard (the server's table
  // registry owns them for the life of the process).
  // `shard` is the virtual shard's number in the cluster.
  TableShard(uint32_t shard, const pb::TableSpec* spec, const Optimizer* optimizer)
      : shard_(shard),
        spec_(spec),
        optimizer_(optimizer),
        arena_(spec->dim() + optimizer->StateFloats(spec->dim())) {}

  // Starts loading the hash-map slot of `key` into cache, so that a lookup
  // issued a few keys later does not stall on memory.
  void Prefetch(uint64_t key) const { index_.prefetch(key); }

  // The row of `key`, created if absent (then `*created` is incremented).
  // `will_change`: the caller is about to update the row, so it is marked
  // for the next Persist().
  float* FindOrCreate(uint64_t key, uint64_t* created, bool will_change = false) {
    auto [it, inserted] = index_.try_emplace(key, 0);
    if (inserted) {
      ++*created;
      it->second = arena_.Allocate();
      float* row = arena_.row(it->second);
      InitializeWeights(spec_->initializer(), key, row, spec_->dim());
      optimizer_->InitState(row, spec_->dim());
    }
    if (will_change) MarkDirty(key, it->second);
    return arena_.row(it->second);
  }

  // Sets `key`'s whole row (weights and optimizer state), as read from a
  // checkpoint; `row` must have stride() floats.
  void Load(uint64_t key, std::span<const float> row) {
    uint64_t created = 0;
    float* dst = FindOrCreate(key, &created, /*will_change=*/true);
    std::memcpy(dst, row.data(), stride() * sizeof(float));
  }

  // Rows changed since the last Persist().
  size_t dirty() const { return dirty_keys_.size(); }

  // Adds every row changed since the last call to `batch`; returns how many.
  size_t Persist(rocksdb::ColumnFamilyHandle* column, RowBatch* batch) {
    // In key order: RocksDB's memtable inserts a sorted run several times
    // faster than random keys (its skip list reuses the last position).
    std::sort(dirty_keys_.begin(), dirty_keys_.end());
    for (uint64_t key : dirty_keys_) {
      const uint32_t index = index_.find(key)->second;
      batch->Put(column, shard_, key, arena_.row(index), stride());
      if (stored_bits_.size() <= index / 64) stored_bits_.resize(index / 64 + 1, 0);
      const uint64_t bit = uint64_t{1} << (index % 64);
      stored_ += (stored_bits_[index / 64] & bit) == 0;
      stored_bits_[index / 64] |= bit;
    }
    const size_t n = dirty_keys_.size();
    dirty_keys_.clear();
    std::fill(dirty_bits_.begin(), dirty_bits_.end(), 0);
    return n;
  }

  // The row of `key`, or nullptr (reads never create rows).
  const float* Find(uint64_t key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : arena_.row(it->second);
  }

  // Calls fn(key, row) for every row.
  template <class Fn>
  void ForEach(Fn fn) const {
    for (const auto& [key, index] : index_) fn(key, arena_.row(index));
  }

  void Apply(float* row, const float* grad) const { optimizer_->Apply(row, grad, spec_->dim()); }

  // worker.consistency bsp: adds `grad` to the step's summed gradient of
  // `key`, applied later by ApplyPending() in one optimizer update, as if one
  // worker had pushed the gradient of all workers' batches together.
  void AddPending(uint64_t key, const float* grad) {
    const uint32_t dim = spec_->dim();
    auto [it, inserted] = pending_index_.try_emplace(key, static_cast<uint32_t>(pending_keys_.size()));
    if (inserted) {
      pending_keys_.push_back(key);
      pending_grads_.resize(pending_grads_.size() + dim, 0.0f);
    }
    float* sum = pending_grads_.data() + size_t{it->second} * dim;
    for (uint32_t j = 0; j < dim; ++j) sum[j] += grad[j];
  }
  bool has_pending() const { return !pending_keys_.empty(); }

  // Applies every pending gradient (creating rows as needed) and calls
  // on_row(key, row) for each updated row. Returns the rows created.
  template <class Fn>
  uint64_t ApplyPending(bool track_changes, Fn on_row) {
    uint64_t created = 0;
    const uint32_t dim = spec_->dim();
    for (size_t i = 0; i < pending_keys_.size(); ++i) {
      float* row = FindOrCreate(pending_keys_[i], &created, track_changes);
      Apply(row, pending_grads_.data() + i * dim);
      on_row(pending_keys_[i], row);
    }
    pending_index_.clear();
    pending_keys_.clear();
    pending_grads_.clear();
    return created;
  }

  uint32_t shard() const { return shard_; }
  uint32_t table_id() const { return spec_->id(); }
  uint32_t dim() const { return spec_->dim(); }
  size_t rows() const { return index_.size(); }
  // Rows Persist() has written at least once: what the store holds. (A row
  // only ever pulled keeps its initial values and is not stored: any server
  // creates it again, identical, from its key.)
  size_t stored_rows() const { return stored_; }
  size_t bytes() const { return arena_.bytes() + index_.capacity() * (sizeof(uint64_t) + sizeof(uint32_t) + 1); }
  uint32_t stride() const { return arena_.stride(); }

 private:
  void MarkDirty(uint64_t key, uint32_t index) {
    if (dirty_bits_.size() <= index / 64) dirty_bits_.resize(index / 64 + 1, 0);
    const uint64_t bit = uint64_t{1} << (index % 64);
    if (dirty_bits_[index / 64] & bit) return;
    dirty_bits_[index / 64] |= bit;
    dirty_keys_.push_back(key);
  }

  const uint32_t shard_;
  const pb::TableSpec* const spec_;
  const Optimizer* const optimizer_;
  absl::flat_hash_map<uint64_t, uint32_t> index_;
  RowArena arena_;
  std::vector<uint64_t> dirty_bits_;  // bit i: row i changed
  std::vector<uint64_t> dirty_keys_;
  std::vector<uint64_t> stored_bits_;  // bit i: row i is in the store
  size_t stored_ = 0;
  // Summed gradients of the current bsp step, by key (in first-push order).
  absl::flat_hash_map<uint64_t, uint32_t> pending_index_;
  std::vector<uint64_t> pending_keys_;
  std::vector<float> pending_grads_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_TABLE_SHARD_H_
