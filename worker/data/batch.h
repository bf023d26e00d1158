// Batch: a mini-batch of parsed examples in the layout the models and the
// parameter client want: features in CSR form whose column is a slot into
// the batch's de-duplicated keys, so each key is pulled and pushed once.
//
// BatchBuilder assembles one from examples. Neither is thread-safe; a batch
// is handed from the reader thread to the trainer thread whole.
#ifndef SPARTA_WORKER_DATA_BATCH_H_
#define SPARTA_WORKER_DATA_BATCH_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace sparta {

// One parsed input line.
struct Example {
  float label = 0;                                  // 0 or 1
  std::vector<std::pair<uint64_t, float>> features; // (key, value)
  std::vector<float> dense;                         // fixed-width dense features
  void Clear() {
    label = 0;
    features.clear();
    dense.clear();
  }
};

struct Batch {
  uint32_t size = 0;                 // examples
  std::vector<float> labels;         // size
  std::vector<uint32_t> offsets{0};  // size + 1: features of example i are [offsets[i], offsets[i+1])
  std::vector<uint32_t> slots;       // per feature: index into unique_keys
  std::vector<float> values;         // per feature
  std::vector<uint64_t> unique_keys; // the batch's distinct keys, in first-seen order
  uint32_t num_dense = 0;
  std::vector<float> dense;          // size * num_dense
  uint64_t bytes_read = 0;           // input bytes consumed so far, all epochs (for progress)
  int epoch = 0;                     // 0-based epoch the batch belongs to
};

class BatchBuilder {
 public:
  void Add(const Example& ex) {
    if (!batch_) Reset();
    Batch& b = *batch_;
    b.labels.push_back(ex.label);
    for (const auto& [key, value] : ex.features) {
      auto [it, inserted] = slot_of_.try_emplace(key, static_cast<uint32_t>(b.unique_keys.size()));
      if (inserted) b.unique_keys.push_back(key);
      b.slots.push_back(it->second);
      b.values.push_back(value);
    }
    b.offsets.push_back(static_cast<uint32_t>(b.slots.size()));
    if (b.size == 0) b.num_dense = static_cast<uint32_t>(ex.dense.size());
    // Examples with a different dense width (libsvm has none) get zeros.
    for (uint32_t j = 0; j < b.num_dense; ++j) b.dense.push_back(j < ex.dense.size() ? ex.dense[j] : 0.0f);
    ++b.size;
  }

  uint32_t size() const { return batch_ ? batch_->size : 0; }

  // Hands out the batch built so far (nullptr if empty) and starts a new one.
  std::unique_ptr<Batch> Finish(uint64_t bytes_read) {
    if (!batch_ || batch_->size == 0) return nullptr;
    batch_->bytes_read = bytes_read;
    slot_of_.clear();
    return std::move(batch_);
  }

 private:
  void Reset() { batch_ = std::make_unique<Batch>(); }

  std::unique_ptr<Batch> batch_;
  absl::flat_hash_map<uint64_t, uint32_t> slot_of_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_DATA_BATCH_H_
