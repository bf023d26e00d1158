// TableShard: the rows of one table that fall into one virtual shard.
// key -> row index in a flat hash map; rows (weights + optimizer state) in a
// RowArena. A row is created on first touch with its deterministic initial
// weights. Rows changed since the last Persist() are remembered (a flag per
// row plus their keys), so a checkpoint writes only what changed.
//
// Two tiers: the rows in the map are hot (in DRAM); under a memory limit the
// executor moves the coldest of them to the server's RocksDB with Evict()
// (by the table's policy: S3-FIFO, a small FIFO queue of new rows before a
// CLOCK sweep, or one CLOCK sweep as approximate LRU or LFU) and brings
// them back with Insert(key, row, /*from_store=*/true) when touched. The
// store holds a row exactly as it was (weights and optimizer state), so a
// row that went cold and came back is bit-identical to one that stayed.
// Only rows whose store copy is stale are written on eviction; a row that
// was never changed is dropped (its key recreates it identically).
//
// Not thread-safe: each shard is owned by exactly one executor thread, which
// is why the update path needs no locks.
#ifndef SPARTA_SERVER_TABLE_SHARD_H_
#define SPARTA_SERVER_TABLE_SHARD_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "server/admission_counter.h"
#include "server/cold_key_filter.h"
#include "server/initializer.h"
#include "server/optimizer.h"
#include "server/row_arena.h"
#include "server/row_store.h"
#include "server/table_policy.h"
#include "sparta.pb.h"

namespace sparta {

class TableShard {
 public:
  // `spec` and `optimizer` must outlive the shard (the server's table
  // registry owns them for the life of the process).
  // `shard` is the virtual shard's number in the cluster.
  static constexpr uint32_t kNoSlot = ~uint32_t{0};
  // DRAM a hot row costs besides its floats, at worst: its hash-map slot
  // (16 bytes and a control byte, at a load between 7/16 and 7/8: 19-39
  // bytes), its key, flags and reference mark in vectors that grow by
  // doubling (10-20 bytes) and the arena's spare chunk. `sparta-ctl plan`
  // measures 63.7 bytes for fm.wv; 48 left a 1.6 GB server 90 MB over its
  // limit at 6M hot rows.
  static constexpr size_t kRowOverheadBytes = 64;  // + 4 with stamps

  // `small_chunks`: the arena grows in chunks of at most 64 KiB instead of
  // 1 MiB, so a memory-limited server does not reserve a MiB per shard.
  // `stamped`: every row remembers when it was last updated (a step or
  // unix seconds, see SetStamp()), for embedding.eviction.ttl; the stamp
  // goes to the store with the row, as one more 4-byte word.
  TableShard(uint32_t shard, const pb::TableSpec* spec, const Optimizer* optimizer,
             EvictionPolicy policy = EvictionPolicy::kLru, bool small_chunks = false, bool stamped = false)
      : shard_(shard),
        spec_(spec),
        optimizer_(optimizer),
        policy_(policy),
        stamped_(stamped),
        arena_(spec->dim() + optimizer->StateFloats(spec->dim()), small_chunks ? 64 << 10 : RowArena::kMaxChunkBytes),
        row_cost_(arena_.stride() * sizeof(float) + kRowOverheadBytes + (stamped ? 4 : 0)) {}

  // Starts loading the hash-map slot of `key` into cache, so that a lookup
  // issued a few keys later does not stall on memory.
  void Prefetch(uint64_t key) const { index_.prefetch(key); }

  // The slot of hot `key`, or kNoSlot.
  uint32_t FindSlot(uint64_t key) const {
    auto it = index_.find(key);
    return it == index_.end() ? kNoSlot : it->second;
  }
  float* row(uint32_t slot) { return arena_.row(slot); }
  const float* row(uint32_t slot) const { return arena_.row(slot); }

  // Makes `key` hot: its row is `values` (stride() floats) when given, else
  // its initial weights and optimizer state. `from_store`: `values` is the
  // store's copy (a cold row coming back). Returns its slot; a key already
  // hot keeps its row.
  uint32_t Insert(uint64_t key, const float* values, bool from_store, uint32_t stamp = 0) {
    auto [it, inserted] = index_.try_emplace(key, 0);
    if (!inserted) return it->second;
    const uint32_t slot = arena_.Allocate();
    it->second = slot;
    if (slot >= keys_.size()) {
      keys_.resize(slot + 1);
      flags_.resize(slot + 1, 0);
      ref_.resize(slot + 1, 0);
      if (stamped_) stamps_.resize(slot + 1, 0);
    }
    if (stamped_) stamps_[slot] = stamp;
    keys_[slot] = key;
    flags_[slot] = kLive | (from_store ? kInStore : 0);
    ref_[slot] = 0;
    if (policy_ == EvictionPolicy::kS3Fifo && !from_store) {
      // A new key waits in the small queue; a key coming back from the
      // store was hot before, and goes straight to the main one.
      flags_[slot] |= kProbation;
      probation_.push_back({slot, key});
      ++probation_rows_;
    }
    float* row = arena_.row(slot);
    if (values != nullptr) {
      std::memcpy(row, values, stride() * sizeof(float));
    } else {
      InitializeWeights(spec_->initializer(), key, row, spec_->dim());
      optimizer_->InitState(row, spec_->dim());
    }
    if (from_store) {
      --cold_rows_;
      ++stored_hot_;
    }
    return slot;
  }

  // A request used the row: what the eviction policy goes by.
  void Touch(uint32_t slot) {
    if (policy_ == EvictionPolicy::kLru) {
      ref_[slot] = 1;
    } else if (ref_[slot] < max_frequency()) {
      ++ref_[slot];
    }
  }

  // The row in `slot` is about to change: it is written at the next
  // Persist() (or when evicted).
  void MarkChanged(uint32_t slot) {
    if (flags_[slot] & kDirty) return;
    flags_[slot] |= kDirty;
    ++dirty_;
    dirty_keys_.push_back(keys_[slot]);
  }
  // The row's current value was just written to the store (write-ahead
  // log mode), so evicting it needs no write.
  void MarkStored(uint32_t slot) {
    if (!(flags_[slot] & kInStore)) ++stored_hot_;
    flags_[slot] |= kInStore;
  }

  // The row of `key`, created if absent (then `*created` is incremented).
  // `will_change`: the caller is about to update the row, so it is marked
  // for the next Persist(). Ignores the cold tier: for shards that have none.
  float* FindOrCreate(uint64_t key, uint64_t* created, bool will_change = false) {
    uint32_t slot = FindSlot(key);
    if (slot == kNoSlot) {
      ++*created;
      slot = Insert(key, nullptr, /*from_store=*/false);
    }
    if (will_change) MarkChanged(slot);
    return arena_.row(slot);
  }

  // Sets `key`'s whole row (weights and optimizer state), as read from a
  // checkpoint or a snapshot: stride() floats, maybe followed by the row's
  // stamp (a record of record_floats()); a row without one is stamped
  // `default_stamp`. Returns whether the key is new here.
  bool Load(uint64_t key, std::span<const float> row, uint32_t default_stamp = 0) {
    uint32_t slot = FindSlot(key);
    const bool created = slot == kNoSlot;
    if (created) slot = Insert(key, nullptr, /*from_store=*/false);
    MarkChanged(slot);
    std::memcpy(arena_.row(slot), row.data(), stride() * sizeof(float));
    if (stamped_) {
      stamps_[slot] = default_stamp;
      if (row.size() > stride()) std::memcpy(&stamps_[slot], row.data() + stride(), sizeof(uint32_t));
    }
    return created;
  }

  // Floats of a row as the store and snapshots hold it: the row, then its
  // stamp if the shard keeps them.
  uint32_t record_floats() const { return stride() + (stamped_ ? 1 : 0); }
  bool stamped() const { return stamped_; }
  // Whether the store holds the row in `slot` (as of the last write of it).
  bool stored(uint32_t slot) const { return (flags_[slot] & kInStore) != 0; }
  uint32_t stamp(uint32_t slot) const { return stamped_ ? stamps_[slot] : 0; }
  void SetStamp(uint32_t slot, uint32_t stamp) {
    if (stamped_) stamps_[slot] = stamp;
  }
  const uint32_t* stamp_ptr(uint32_t slot) const { return stamped_ ? &stamps_[slot] : nullptr; }

  // The row in `slot` is its key's again: initial weights and optimizer
  // state (an expired row touched again starts over).
  void Reinitialize(uint32_t slot) {
    float* row = arena_.row(slot);
    InitializeWeights(spec_->initializer(), keys_[slot], row, spec_->dim());
    optimizer_->InitState(row, spec_->dim());
  }

  // Deletes up to `max_slots` slots' worth of hot rows not updated since
  // before `oldest` (a stamp), sweeping on from where the last call
  // stopped; a row with a store copy gets a delete in `batch`. Returns the
  // rows deleted.
  size_t ExpireHot(size_t max_slots, uint32_t oldest, rocksdb::ColumnFamilyHandle* column, RowBatch* batch) {
    if (!stamped_) return 0;
    size_t expired = 0;
    const uint32_t slots = arena_.size();
    for (size_t examined = 0; examined < max_slots && examined < slots; ++examined) {
      if (expiry_hand_ >= slots) expiry_hand_ = 0;
      const uint32_t slot = expiry_hand_++;
      if (!(flags_[slot] & kLive) || stamps_[slot] >= oldest) continue;
      if (flags_[slot] & kInStore) {
        if (column == nullptr) continue;
        batch->Delete(column, shard_, keys_[slot]);
        --stored_hot_;
      }
      if (flags_[slot] & kDirty) --dirty_;
      if (flags_[slot] & kProbation) --probation_rows_;
      flags_[slot] = 0;
      index_.erase(keys_[slot]);
      arena_.Free(slot);
      ++expired;
    }
    return expired;
  }

  // Rows changed since the last Persist().
  size_t dirty() const { return dirty_; }

  // Adds every row changed since the last call to `batch`; returns how many.
  size_t Persist(rocksdb::ColumnFamilyHandle* column, RowBatch* batch) {
    // In key order: RocksDB's memtable inserts a sorted run several times
    // faster than random keys (its skip list reuses the last position).
    std::sort(dirty_keys_.begin(), dirty_keys_.end());
    size_t n = 0;
    for (uint64_t key : dirty_keys_) {
      // A key may be listed twice, or be gone (written when it was evicted).
      const uint32_t slot = FindSlot(key);
      if (slot == kNoSlot || !(flags_[slot] & kDirty)) continue;
      batch->Put(column, shard_, key, arena_.row(slot), stride(), stamp_ptr(slot));
      flags_[slot] &= ~kDirty;
      MarkStored(slot);
      ++n;
    }
    dirty_keys_.clear();
    dirty_ = 0;
    return n;
  }

  // Moves up to `n` of the coldest hot rows out of DRAM: a row whose store
  // copy is stale is added to `batch` (written before the caller frees
  // anything else), one that was never changed is dropped. Returns how many
  // rows left DRAM. `column` may be null when nothing can be stale (every
  // change is logged as it happens).
  size_t Evict(size_t n, rocksdb::ColumnFamilyHandle* column, RowBatch* batch) {
    victims_.clear();
    const uint32_t slots = arena_.size();
    if (policy_ == EvictionPolicy::kS3Fifo) TakeFromProbation(n, column);
    // Two full turns at most: the first may only clear reference marks.
    for (size_t examined = 0; victims_.size() < n && examined < size_t{2} * slots * max_frequency(); ++examined) {
      if (hand_ >= slots) hand_ = 0;
      const uint32_t slot = hand_++;
      if ((flags_[slot] & (kLive | kLeaving | kProbation)) != kLive) continue;
      if (ref_[slot] > 0) {
        // LFU, S3-FIFO: a row used k times survives about k turns of the hand.
        ref_[slot] = policy_ == EvictionPolicy::kLru ? 0 : ref_[slot] - 1;
        continue;
      }
      if ((flags_[slot] & kDirty) && column == nullptr) continue;
      flags_[slot] |= kLeaving;
      victims_.push_back(slot);
    }
    // Written in key order: RocksDB's memtable inserts a sorted run several
    // times faster than random keys (its skip list reuses the last position).
    std::sort(victims_.begin(), victims_.end(), [&](uint32_t a, uint32_t b) { return keys_[a] < keys_[b]; });
    for (uint32_t slot : victims_) {
      const uint64_t key = keys_[slot];
      const uint8_t flags = flags_[slot];
      if (flags & kDirty) {
        batch->Put(column, shard_, key, arena_.row(slot), stride(), stamp_ptr(slot));
        --dirty_;
      }
      if (flags & (kDirty | kInStore)) {
        ++cold_rows_;
        cold_keys_.Add(key);
      }
      if (flags & kInStore) --stored_hot_;
      flags_[slot] = 0;
      index_.erase(key);
      arena_.Free(slot);
    }
    const size_t evicted = victims_.size();
    // Listed keys whose rows left: keep the list proportional to the rows
    // that are actually dirty, or it would grow with every key ever seen
    // (its memory counts against the budget: see side_bytes()).
    if (dirty_keys_.size() > dirty_ + dirty_ / 2 + 1024) {
      std::erase_if(dirty_keys_, [&](uint64_t key) {
        const uint32_t slot = FindSlot(key);
        return slot == kNoSlot || !(flags_[slot] & kDirty);
      });
    }
    return evicted;
  }

  // Gives back the memory of rows that left, when at least an eighth of
  // the arena's slots are free: the rows in its highest slots move down
  // into the free ones and the arena is cut after the last (see
  // RowArena::Truncate()), with the vectors by slot and the hash map. Under
  // a memory limit the hot rows' room shrinks as the cold tier's index
  // grows, and the memory its hot rows held must go back, or the server's
  // resident memory outgrows its limit. Slots change: no caller may hold
  // one across this call. A moved row still in S3-FIFO's small queue joins
  // the main one (its queue entry names the old slot). Returns the rows
  // moved.
  size_t Shrink() {
    const uint32_t slots = arena_.size();
    const uint32_t live = static_cast<uint32_t>(index_.size());
    if (slots < 1024 || size_t{slots - live} * 8 < slots) return 0;
    size_t moved = 0;
    uint32_t low = 0;
    for (uint32_t high = slots; high-- > live;) {
      if (!(flags_[high] & kLive)) continue;
      while (flags_[low] & kLive) ++low;  // a free slot below `live` for each live one above it
      MoveRow(high, low++);
      ++moved;
    }
    arena_.Truncate(live);
    keys_.resize(live);
    keys_.shrink_to_fit();
    flags_.resize(live);
    flags_.shrink_to_fit();
    ref_.resize(live);
    ref_.shrink_to_fit();
    if (stamped_) {
      stamps_.resize(live);
      stamps_.shrink_to_fit();
    }
    index_.rehash(0);  // to the size its rows need
    if (hand_ >= live) hand_ = 0;
    if (expiry_hand_ >= live) expiry_hand_ = 0;
    return moved;
  }

  // The occurrence counts of keys not admitted yet, made on first use with
  // `bytes` of counters.
  AdmissionCounter& admission(size_t bytes) {
    if (!admission_) admission_ = std::make_unique<AdmissionCounter>(bytes);
    return *admission_;
  }
  // Null until a key was counted.
  const AdmissionCounter* admission_counter() const { return admission_.get(); }

  // Rows of this shard in the store only (not hot). While it is 0 a key
  // that is not hot has no row anywhere and needs no store lookup.
  size_t cold_rows() const { return cold_rows_; }
  // Whether `key`, not hot, may have a row in the store: false for every
  // key that never went cold here, without touching the store.
  bool MayBeCold(uint64_t key) const { return cold_rows_ > 0 && cold_keys_.MayContain(key); }
  // DRAM besides the hot rows that grows as the shard is used: the filter
  // behind MayBeCold() (with the cold rows) and the list of changed keys
  // (with the changes between checkpoints; capacity, which never shrinks).
  // S3-FIFO's small queue (at most a tenth of the hot rows, and stale
  // entries of rows that left it early) grows with the hot rows too.
  size_t side_bytes() const {
    return cold_keys_.bytes() + dirty_keys_.capacity() * sizeof(uint64_t) + probation_.size() * sizeof(QueuedRow);
  }
  // A cold row was deleted from the store (expired).
  void ForgetCold(size_t n) { cold_rows_ -= std::min(n, cold_rows_); }

  // The row of `key`, or nullptr (reads never create rows).
  const float* Find(uint64_t key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : arena_.row(it->second);
  }

  // Calls fn(key, slot) for every hot row.
  template <class Fn>
  void ForEach(Fn fn) const {
    for (const auto& [key, slot] : index_) fn(key, slot);
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

  // The keys with pending gradients, in first-push order.
  const std::vector<uint64_t>& pending_keys() const { return pending_keys_; }

  // Applies every pending gradient to the row in slots[i] (kNoSlot: a key
  // that is not admitted, skipped) and calls on_row(key, slot) for each
  // updated row.
  template <class Fn>
  void ApplyPending(std::span<const uint32_t> slots, bool track_changes, Fn on_row) {
    const uint32_t dim = spec_->dim();
    for (size_t i = 0; i < pending_keys_.size(); ++i) {
      if (slots[i] == kNoSlot) continue;
      if (track_changes) MarkChanged(slots[i]);
      Touch(slots[i]);
      Apply(arena_.row(slots[i]), pending_grads_.data() + i * dim);
      on_row(pending_keys_[i], slots[i]);
    }
    pending_index_.clear();
    pending_keys_.clear();
    pending_grads_.clear();
  }

  uint32_t shard() const { return shard_; }
  uint32_t table_id() const { return spec_->id(); }
  // Rows held here, hot and cold.
  size_t rows() const { return index_.size() + cold_rows_; }
  size_t hot_rows() const { return index_.size(); }
  // Rows the store holds: written at least once (by Persist(), the log or
  // an eviction). A row only ever pulled keeps its initial values and is not
  // stored: any server creates it again, identical, from its key.
  size_t stored_rows() const { return stored_hot_ + cold_rows_; }
  // What the hot rows cost in DRAM, as counted against a memory limit.
  size_t hot_bytes() const { return index_.size() * row_cost_; }
  size_t row_cost() const { return row_cost_; }
  size_t bytes() const {
    return arena_.bytes() + index_.capacity() * (sizeof(uint64_t) + sizeof(uint32_t) + 1) +
           keys_.capacity() * sizeof(uint64_t) + flags_.capacity() + ref_.capacity() +
           stamps_.capacity() * sizeof(uint32_t) + cold_keys_.bytes();
  }
  uint32_t stride() const { return arena_.stride(); }

 private:
  // flags_ bits.
  static constexpr uint8_t kLive = 1;     // the slot holds a row
  static constexpr uint8_t kDirty = 2;    // changed since it was last stored
  static constexpr uint8_t kInStore = 4;  // the store has a copy (maybe stale, see kDirty)
  static constexpr uint8_t kLeaving = 8;  // chosen by the Evict() in progress
  static constexpr uint8_t kProbation = 16;  // kS3Fifo: in the small queue (probation_)
  static constexpr uint8_t kMaxFrequency = 15;

  // Most marks a row keeps: each is one more pass of the CLOCK hand it
  // survives (kLru: one; kS3Fifo: three, as its authors' two bits).
  uint8_t max_frequency() const {
    switch (policy_) {
      case EvictionPolicy::kLru: return 1;
      case EvictionPolicy::kS3Fifo: return 3;
      case EvictionPolicy::kLfu: break;
    }
    return kMaxFrequency;
  }

  // Shrink(): the row in slot `from` moves to free slot `to`.
  void MoveRow(uint32_t from, uint32_t to) {
    std::memcpy(arena_.row(to), arena_.row(from), stride() * sizeof(float));
    keys_[to] = keys_[from];
    flags_[to] = flags_[from];
    ref_[to] = ref_[from];
    if (stamped_) stamps_[to] = stamps_[from];
    if (flags_[to] & kProbation) {
      flags_[to] &= ~kProbation;
      --probation_rows_;
    }
    index_[keys_[to]] = to;
    flags_[from] = 0;
  }

  // kS3Fifo: while the small queue holds more than a tenth of the hot rows,
  // takes rows from its front: one used since it came in moves to the main
  // queue (the CLOCK over the slots), one that was not becomes a victim,
  // until Evict() has `n`. A key seen once (most of a long tail) thus
  // leaves after a tenth of the table's turn instead of a whole one, and
  // the room it held keeps the keys that come back.
  void TakeFromProbation(size_t n, rocksdb::ColumnFamilyHandle* column) {
    while (victims_.size() < n && !probation_.empty() && probation_rows_ * 10 > index_.size()) {
      const QueuedRow queued = probation_.front();
      probation_.pop_front();
      const uint32_t slot = queued.slot;
      // An entry outlives its row when the row expired (and the slot may
      // hold another key by now, in the main queue or queued again later).
      if (slot >= keys_.size() || keys_[slot] != queued.key || !(flags_[slot] & kProbation)) continue;
      flags_[slot] &= ~kProbation;
      --probation_rows_;
      if (ref_[slot] > 0 || ((flags_[slot] & kDirty) && column == nullptr)) {
        ref_[slot] = 0;
        continue;
      }
      flags_[slot] |= kLeaving;
      victims_.push_back(slot);
    }
    if (probation_.size() > 2 * probation_rows_ + 1024) {
      std::erase_if(probation_, [&](const QueuedRow& q) {
        return keys_[q.slot] != q.key || !(flags_[q.slot] & kProbation);
      });
    }
  }

  const uint32_t shard_;
  const pb::TableSpec* const spec_;
  const Optimizer* const optimizer_;
  const EvictionPolicy policy_;
  const bool stamped_;
  absl::flat_hash_map<uint64_t, uint32_t> index_;
  RowArena arena_;
  const size_t row_cost_;
  // By slot: its key, kLive/kDirty/kInStore, and the CLOCK reference mark
  // (LRU: used since the hand passed; LFU and S3-FIFO: uses, less one per
  // pass, up to max_frequency()).
  std::vector<uint64_t> keys_;
  std::vector<uint8_t> flags_;
  std::vector<uint8_t> ref_;
  uint32_t hand_ = 0;
  uint32_t expiry_hand_ = 0;
  std::vector<uint32_t> stamps_;  // by slot, when stamped_
  std::vector<uint64_t> dirty_keys_;  // keys marked kDirty, maybe stale entries
  std::vector<uint32_t> victims_;     // Evict()'s slots, kept for their capacity
  // kS3Fifo: the small queue, new rows in the order they came, maybe with
  // stale entries (see TakeFromProbation()); probation_rows_ of its rows
  // are still in it (marked kProbation).
  struct QueuedRow {
    uint32_t slot;
    uint64_t key;
  };
  std::deque<QueuedRow> probation_;
  size_t probation_rows_ = 0;
  size_t dirty_ = 0;       // rows marked kDirty
  size_t stored_hot_ = 0;  // hot rows marked kInStore
  size_t cold_rows_ = 0;
  ColdKeyFilter cold_keys_;  // every key that went cold here
  std::unique_ptr<AdmissionCounter> admission_;
  // Summed gradients of the current bsp step, by key (in first-push order).
  absl::flat_hash_map<uint64_t, uint32_t> pending_index_;
  std::vector<uint64_t> pending_keys_;
  std::vector<float> pending_grads_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_TABLE_SHARD_H_
