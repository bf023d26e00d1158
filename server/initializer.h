// Deterministic per-key initial weights. A row's initial value depends only
// on (seed, key, column), never on which server or thread creates it or when,
// so a job is reproducible and a shard rebuilt elsewhere starts identical.
// Pure functions; thread-safe.
#ifndef SPARTA_SERVER_INITIALIZER_H_
#define SPARTA_SERVER_INITIALIZER_H_

#include <cmath>
#include <cstdint>

#include "common/hash.h"
#include "sparta.pb.h"

namespace sparta {

// Uniform in [0, 1) from 53 mixed bits.
inline double UnitUniform(uint64_t bits) { return (bits >> 11) * (1.0 / 9007199254740992.0); }

inline void InitializeWeights(const pb::InitializerSpec& spec, uint64_t key, float* w, uint32_t dim) {
  const uint64_t base = Mix64(key ^ Mix64(spec.seed()));
  for (uint32_t j = 0; j < dim; ++j) {
    const uint64_t h = Mix64(base + (j + 1) * 0x9e3779b97f4a7c15ULL);
    switch (spec.type()) {
      case pb::InitializerSpec::ZERO: w[j] = 0; break;
      case pb::InitializerSpec::CONSTANT: w[j] = spec.scale(); break;
      case pb::InitializerSpec::UNIFORM: w[j] = static_cast<float>((2 * UnitUniform(h) - 1) * spec.scale()); break;
      case pb::InitializerSpec::NORMAL: {
        // Box-Muller from two independent streams of the same key.
        const double u1 = UnitUniform(h) + 1e-300;
        const double u2 = UnitUniform(Mix64(h ^ 0xd1b54a32d192ed03ULL));
        w[j] = static_cast<float>(std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2) * spec.scale());
        break;
      }
      default: w[j] = 0;
    }
  }
}

}  // namespace sparta

#endif  // SPARTA_SERVER_INITIALIZER_H_
