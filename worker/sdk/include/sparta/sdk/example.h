// Example and Batch: the data a reader produces and a model consumes.
//
// A reader fills one Example per input record. The worker groups examples
// into a Batch whose sparse features are in CSR form, with each feature's
// column a slot into the batch's de-duplicated keys, so that every key is
// pulled from and pushed to the servers once per batch.
//
// Plain structs; not thread-safe. Part of the plugin ABI (see plugin.h):
// changing a member changes SPARTA_SDK_ABI_VERSION.
#ifndef SPARTA_SDK_EXAMPLE_H_
#define SPARTA_SDK_EXAMPLE_H_

#include <cstdint>
#include <vector>

namespace sparta {

// One sparse feature: a 64-bit key (already hashed or an index), its value
// (1 for a one-hot token) and the field it belongs to, in [0, num_fields).
// Models that pool per field (dnn) use `field`; the others ignore it.
struct Feature {
  uint64_t key = 0;
  float value = 1.0f;
  uint32_t field = 0;
};

// One parsed record.
struct Example {
  float label = 0;                // 0 or 1
  std::vector<Feature> features;  // any order; a key may repeat
  std::vector<float> dense;       // the reader's num_dense dense features
  void Clear() {
    label = 0;
    features.clear();
    dense.clear();
  }
};

struct Batch {
  uint32_t size = 0;                  // examples
  std::vector<float> labels;          // size
  std::vector<uint32_t> offsets{0};   // size + 1: features of example i are [offsets[i], offsets[i+1])
  std::vector<uint32_t> slots;        // per feature: index into unique_keys
  std::vector<float> values;          // per feature
  std::vector<uint32_t> fields;       // per feature
  std::vector<uint64_t> unique_keys;  // the batch's distinct keys
  uint32_t fresh_keys = 0;            // unique_keys[0, fresh_keys) are not in the reader's previous batch
  uint32_t num_dense = 0;
  std::vector<float> dense;           // size * num_dense, row-major
  uint64_t bytes_read = 0;            // input bytes consumed so far, all epochs (for progress)
  int epoch = 0;                      // 0-based epoch the batch belongs to
  uint64_t unit = 0;                  // data.assignment on_demand: its work unit (0: none)
  uint32_t unit_batch = 0;            // and its place among that unit's batches
};

}  // namespace sparta

#endif  // SPARTA_SDK_EXAMPLE_H_
