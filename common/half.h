// IEEE 754 binary16 ("fp16") conversion for values on the wire
// (`wire.dtype: fp16`): pulled rows and pushed gradients travel as half
// precision and are widened to fp32 for every computation and for storage.
// Rounding is to nearest, ties to even; out-of-range values become +-inf,
// NaN stays NaN. Uses the F16C instructions when the CPU has them.
// Pure functions; thread-safe.
#ifndef SPARTA_COMMON_HALF_H_
#define SPARTA_COMMON_HALF_H_

#include <cstddef>
#include <cstdint>

namespace sparta {

uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);

// Array forms (n elements); the fast path converts 8 at a time.
void FloatsToHalves(const float* in, uint16_t* out, size_t n);
void HalvesToFloats(const uint16_t* in, float* out, size_t n);

}  // namespace sparta

#endif  // SPARTA_COMMON_HALF_H_
