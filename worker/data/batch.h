// BatchBuilder: assembles a Batch (sparta/sdk/example.h) from examples,
// de-duplicating keys as it goes. Not thread-safe; a batch is handed from the
// reader thread to a trainer thread whole.
#ifndef SPARTA_WORKER_DATA_BATCH_H_
#define SPARTA_WORKER_DATA_BATCH_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "sparta/sdk/example.h"

namespace sparta {

class BatchBuilder {
 public:
  void Add(const Example& ex) {
    if (!batch_) Reset();
    Batch& b = *batch_;
    b.labels.push_back(ex.label);
    // Most of this loop's time was waiting for the map's slots (perf
    // annotate: the key compare and the value load, half of it), so each
    // key's slot is fetched a few features ahead of its lookup.
    const std::vector<Feature>& features = ex.features;
    for (size_t i = 0; i < features.size(); ++i) {
      FetchAhead(slot_of_, i, features.size(), [&](size_t j) { return features[j].key; });
      const Feature& f = features[i];
      auto [it, inserted] = slot_of_.try_emplace(f.key, static_cast<uint32_t>(b.unique_keys.size()));
      if (inserted) b.unique_keys.push_back(f.key);
      b.slots.push_back(it->second);
      b.values.push_back(f.value);
      b.fields.push_back(f.field);
    }
    b.offsets.push_back(static_cast<uint32_t>(b.slots.size()));
    if (b.size == 0) b.num_dense = static_cast<uint32_t>(ex.dense.size());
    // Examples with a different dense width (libsvm has none) get zeros.
    for (uint32_t j = 0; j < b.num_dense; ++j) b.dense.push_back(j < ex.dense.size() ? ex.dense[j] : 0.0f);
    ++b.size;
  }

  uint32_t size() const { return batch_ ? batch_->size : 0; }

  // Hands out the batch built so far (nullptr if empty) and starts a new one.
  // Its keys absent from the previous batch come first (batch.fresh_keys of
  // them), so that a trainer can prefetch those while the previous batch is
  // still being computed and pull the shared ones after its push. Doing it
  // here keeps the work on the reader thread, off the training path.
  std::unique_ptr<Batch> Finish(uint64_t bytes_read) {
    if (!batch_ || batch_->size == 0) return nullptr;
    Batch& b = *batch_;
    b.bytes_read = bytes_read;
    const size_t n = b.unique_keys.size();
    new_index_.resize(n);
    // One lookup per key: a shared key is marked in the first pass and
    // numbered, after the fresh ones, in the second.
    constexpr uint32_t kShared = UINT32_MAX;
    uint32_t fresh = 0;
    for (size_t i = 0; i < n; ++i) {
      FetchAhead(previous_, i, n, [&](size_t j) { return b.unique_keys[j]; });
      new_index_[i] = previous_.contains(b.unique_keys[i]) ? kShared : fresh++;
    }
    uint32_t shared = fresh;
    for (size_t i = 0; i < n; ++i) {
      if (new_index_[i] == kShared) new_index_[i] = shared++;
    }
    if (fresh < n) {
      std::vector<uint64_t> keys(n);
      for (size_t i = 0; i < n; ++i) keys[new_index_[i]] = b.unique_keys[i];
      b.unique_keys = std::move(keys);
      for (uint32_t& slot : b.slots) slot = new_index_[slot];
    }
    b.fresh_keys = fresh;
    last_ = {b.size, b.slots.size(), b.dense.size(), n};
    std::swap(previous_, slot_of_);  // only the key set of previous_ is used
    // Abseil's clear() frees a table of more than 127 slots, and the next
    // batch would grow it again through a rehash at each doubling (perf:
    // the map's resize was 1.4-2.8% of a worker's and a front-end's time).
    // Batches are alike: one allocation of the last one's size instead.
    slot_of_.clear();
    slot_of_.reserve(previous_.size());
    return std::move(batch_);
  }

 private:
  void Reset() {
    batch_ = std::make_unique<Batch>();
    // Sized as the last batch: each array would otherwise grow through a
    // copy at every doubling, every batch.
    Batch& b = *batch_;
    b.labels.reserve(last_.examples);
    b.offsets.reserve(last_.examples + 1);
    b.slots.reserve(last_.features);
    b.values.reserve(last_.features);
    b.fields.reserve(last_.features);
    b.dense.reserve(last_.dense);
    b.unique_keys.reserve(last_.unique_keys);
  }

  static constexpr size_t kLookAhead = 4;  // keys whose map slots are fetched ahead

  // Called at the top of step i of a loop over n keys that looks each up in
  // `map`: starts fetching the slot of the key kLookAhead steps on (and, at
  // step 0, of the first keys, whose lookups come before that).
  template <typename Map, typename KeyAt>
  static void FetchAhead(const Map& map, size_t i, size_t n, const KeyAt& key_at) {
    if (i == 0) {
      for (size_t j = 0; j < std::min(kLookAhead, n); ++j) map.prefetch(key_at(j));
    }
    if (i + kLookAhead < n) map.prefetch(key_at(i + kLookAhead));
  }

  struct Sizes {
    size_t examples = 0, features = 0, dense = 0, unique_keys = 0;
  };

  std::unique_ptr<Batch> batch_;
  Sizes last_;  // of the last batch handed out
  absl::flat_hash_map<uint64_t, uint32_t> slot_of_;
  absl::flat_hash_map<uint64_t, uint32_t> previous_;  // the last batch's keys
  std::vector<uint32_t> new_index_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_DATA_BATCH_H_
