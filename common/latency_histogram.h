// LatencyHistogram: durations counted into fixed buckets, for /metrics (a
// Prometheus histogram, from which p50/p99 are computed at query time) and
// for a daemon's own percentile lines. Buckets run from 50 us to 10 s in
// steps of about 2x-2.5x, fine enough for millisecond service times.
//
// Thread-safe and lock-free: Observe() is a few relaxed atomic adds, so the
// request path pays nothing measurable for being observed.
#ifndef SPARTA_COMMON_LATENCY_HISTOGRAM_H_
#define SPARTA_COMMON_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "common/metrics.h"

namespace sparta {

class LatencyHistogram {
 public:
  static constexpr std::array<double, 16> kBounds = {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3,  2.5e-3, 5e-3,
                                                     10e-3, 25e-3,  50e-3,  100e-3, 250e-3, 500e-3, 1.0,  10.0};

  void Observe(double seconds) {
    size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  }

  uint64_t count() const {
    uint64_t n = 0;
    for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
    return n;
  }

  void WriteTo(MetricWriter& out, const std::string& name, const std::string& help,
               const MetricLabels& labels = {}) const {
    std::vector<std::pair<double, uint64_t>> buckets;
    uint64_t below = 0;
    for (size_t i = 0; i < kBounds.size(); ++i) {
      below += counts_[i].load(std::memory_order_relaxed);
      buckets.emplace_back(kBounds[i], below);
    }
    const uint64_t all = below + counts_[kBounds.size()].load(std::memory_order_relaxed);
    out.Histogram(name, help, buckets, sum_ns_.load(std::memory_order_relaxed) / 1e9, all, labels);
  }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> counts_{};  // the last: above every bound
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace sparta

#endif  // SPARTA_COMMON_LATENCY_HISTOGRAM_H_
