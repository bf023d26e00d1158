// RandomBatch: a batch of random examples for model and backend tests.
// Header-only test helper; not thread-safe (it draws from `rng`).
#ifndef SPARTA_TESTS_UNIT_RANDOM_BATCH_H_
#define SPARTA_TESTS_UNIT_RANDOM_BATCH_H_

#include <random>

#include "worker/data/batch.h"

namespace sparta {

// Examples of `per_example` random keys in [1, keys], feature f in field
// f % fields, with `dense` random dense features; every third is a click.
inline Batch RandomBatch(int examples, int keys, int per_example, std::mt19937& rng, int fields = 1, int dense = 0) {
  BatchBuilder builder;
  std::uniform_int_distribution<uint64_t> key(1, keys);
  std::uniform_real_distribution<float> value(0.5f, 1.5f);
  for (int i = 0; i < examples; ++i) {
    Example ex;
    ex.label = i % 3 == 0 ? 1.0f : 0.0f;
    for (int f = 0; f < per_example; ++f) {
      ex.features.push_back({key(rng), value(rng), static_cast<uint32_t>(f % fields)});
    }
    for (int d = 0; d < dense; ++d) ex.dense.push_back(value(rng) - 1.0f);
    builder.Add(ex);
  }
  return std::move(*builder.Finish(0));
}

}  // namespace sparta

#endif  // SPARTA_TESTS_UNIT_RANDOM_BATCH_H_
