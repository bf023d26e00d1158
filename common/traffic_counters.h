// TrafficCounters: the data-plane counters a server and a KV client both
// keep (requests, keys and bytes each way), and how they appear at /metrics.
//
// Thread-safe: relaxed atomics, written on the I/O path, read by scrapes.
#ifndef SPARTA_COMMON_TRAFFIC_COUNTERS_H_
#define SPARTA_COMMON_TRAFFIC_COUNTERS_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include <zmq.hpp>

#include "common/metrics.h"

namespace sparta {

struct TrafficCounters {
  std::atomic<uint64_t> pulls{0};
  std::atomic<uint64_t> pushes{0};
  std::atomic<uint64_t> pulled_keys{0};
  std::atomic<uint64_t> pushed_keys{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};

  static void Add(std::atomic<uint64_t>& counter, uint64_t n) { counter.fetch_add(n, std::memory_order_relaxed); }

  static uint64_t FrameBytes(const std::vector<zmq::message_t>& frames) {
    uint64_t n = 0;
    for (const auto& f : frames) n += f.size();
    return n;
  }

  // sparta_requests_total{type=pull|push}, sparta_keys_total{type=...},
  // sparta_bytes_total{direction=in|out}. keys/s is rate(sparta_keys_total).
  void WriteTo(MetricWriter& out) const {
    auto get = [](const std::atomic<uint64_t>& c) { return static_cast<double>(c.load(std::memory_order_relaxed)); };
    out.Counter("sparta_requests_total", "Data-plane requests (server: received; worker: sent).", get(pulls),
                {{"type", "pull"}});
    out.Counter("sparta_requests_total", "Data-plane requests (server: received; worker: sent).", get(pushes),
                {{"type", "push"}});
    out.Counter("sparta_keys_total", "Keys in data-plane requests; keys/s is its rate.", get(pulled_keys),
                {{"type", "pull"}});
    out.Counter("sparta_keys_total", "Keys in data-plane requests; keys/s is its rate.", get(pushed_keys),
                {{"type", "push"}});
    out.Counter("sparta_bytes_total", "Payload bytes on the data plane.", get(bytes_in), {{"direction", "in"}});
    out.Counter("sparta_bytes_total", "Payload bytes on the data plane.", get(bytes_out), {{"direction", "out"}});
  }
};

}  // namespace sparta

#endif  // SPARTA_COMMON_TRAFFIC_COUNTERS_H_
