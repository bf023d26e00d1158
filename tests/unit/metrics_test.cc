// AUC against the brute-force pair count, and logloss against its definition.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "worker/eval_metrics.h"

namespace sparta::metrics_test {
namespace {

double PairAuc(const std::vector<float>& s, const std::vector<float>& y) {
  double good = 0, pairs = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    for (size_t j = 0; j < s.size(); ++j) {
      if (y[i] == 1 && y[j] == 0) {
        pairs += 1;
        good += s[i] > s[j] ? 1 : (s[i] == s[j] ? 0.5 : 0);
      }
    }
  }
  return good / pairs;
}

TEST_CASE("auc equals the fraction of correctly ordered pairs, ties counting half") {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> s(300), y(300);
    for (size_t i = 0; i < s.size(); ++i) {
      y[i] = rng() % 3 == 0;
      s[i] = static_cast<float>(rng() % 20) / 20 + 0.1f * y[i];  // many ties
    }
    REQUIRE(Auc(s, y) == Approx(PairAuc(s, y)).epsilon(1e-12));
  }
  CHECK(std::isnan(Auc(std::vector<float>{0.1f, 0.2f}, std::vector<float>{1, 1})));
  // A diverged model's NaN scores must not break the sort.
  std::vector<float> s = {NAN, 0.5f, NAN, 0.9f}, y = {1, 0, 0, 1};
  CHECK(std::isfinite(Auc(s, y)));
}

TEST_CASE("logloss is the mean negative log-likelihood, clipped") {
  std::vector<float> p = {0.9f, 0.2f, 0.0f}, y = {1, 0, 1};
  const double expected = -(std::log(0.9) + std::log(0.8) + std::log(1e-7)) / 3;
  CHECK(MeanLogLoss(p, y) == Approx(expected).epsilon(1e-6));
}

}  // namespace
}  // namespace sparta::metrics_test
