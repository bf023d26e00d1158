// fp16 conversion: every one of the 65536 half values survives a round trip
// through float, float -> half rounds to the nearest half (ties to even),
// and the vector path agrees with the scalar one.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/half.h"

namespace sparta::half_test {
namespace {

TEST_CASE("every half value round-trips through float") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      REQUIRE(std::isnan(HalfToFloat(FloatToHalf(f))));
    } else {
      REQUIRE(FloatToHalf(f) == h);
    }
  }
  CHECK(HalfToFloat(0x3c00) == 1.0f);
  CHECK(HalfToFloat(0xc000) == -2.0f);
  CHECK(HalfToFloat(0x7bff) == 65504.0f);
  CHECK(HalfToFloat(0x0001) == std::ldexp(1.0f, -24));
}

TEST_CASE("float to half rounds to nearest, ties to even, and saturates to inf") {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> exponent(-26, 17);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::ldexp(1.0f + (rng() % 1000000) / 1e6f, static_cast<int>(exponent(rng))) * (rng() % 2 ? 1 : -1);
    const uint16_t h = FloatToHalf(f);
    const float back = HalfToFloat(h);
    if (std::isinf(back)) {
      REQUIRE(std::abs(f) >= 65520.0f);
      continue;
    }
    // No other half is closer to f.
    const float up = HalfToFloat(static_cast<uint16_t>(h + 1)), down = HalfToFloat(static_cast<uint16_t>(h - 1));
    const float err = std::abs(back - f);
    if (!std::isnan(up) && (h & 0x7fff) != 0x7bff) REQUIRE(err <= std::abs(up - f));
    if ((h & 0x7fff) != 0) REQUIRE(err <= std::abs(down - f));
  }
  CHECK(FloatToHalf(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);                          // tie -> even (down)
  CHECK(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);                      // tie -> even (up)
  CHECK(FloatToHalf(1e6f) == 0x7c00);
  CHECK(FloatToHalf(-1e6f) == 0xfc00);
  CHECK(FloatToHalf(1e-10f) == 0);
}

TEST_CASE("array conversion matches the scalar one") {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0, 10);
  std::vector<float> in(1003), back(1003);
  for (float& f : in) f = normal(rng);
  in[5] = INFINITY;
  std::vector<uint16_t> halves(in.size());
  FloatsToHalves(in.data(), halves.data(), in.size());
  HalvesToFloats(halves.data(), back.data(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    REQUIRE(halves[i] == FloatToHalf(in[i]));
    REQUIRE(std::memcmp(&back[i], &in[i], 0) == 0);
    REQUIRE((back[i] == HalfToFloat(halves[i]) || std::isnan(back[i])));
  }
}

}  // namespace
}  // namespace sparta::half_test
