// DaemonMetrics: one daemon's /metrics endpoint: the registry, the snapshot
// its main thread republishes about once a second, and the HTTP server.
// Each daemon owns one and adds collectors for what it counts.
//
// Start(), SetIdentity() and AddCollector() are for the owning thread at
// set-up; Publish()/PublishDue() for the thread that owns the state being
// published. Scrapes run on the server's thread. The collectors must stay
// valid until this object is destroyed (declare it after what they read).
#ifndef SPARTA_COMMON_DAEMON_METRICS_H_
#define SPARTA_COMMON_DAEMON_METRICS_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/config.h"
#include "common/metrics.h"
#include "common/metrics_server.h"

namespace sparta {

class DaemonMetrics {
 public:
  DaemonMetrics();
  ~DaemonMetrics();

  // Serves /metrics on host:metrics.port unless metrics.port is -1.
  absl::Status Start(const Config& config, const std::string& host);
  // 0 when not serving.
  uint32_t port() const { return server_ ? static_cast<uint32_t>(server_->port()) : 0; }

  // Labels every sample with role and rank.
  void SetIdentity(const std::string& role, int rank);
  void AddCollector(MetricsRegistry::Collector collector) { registry_.AddCollector(std::move(collector)); }

  // Whether a second has passed since the last Publish().
  bool PublishDue() const;
  void Publish(MetricWriter samples);

  std::string Render() const { return registry_.Render(); }

 private:
  MetricsRegistry registry_;
  MetricsSnapshot snapshot_;
  std::chrono::steady_clock::time_point last_publish_{};
  std::unique_ptr<MetricsServer> server_;
};

}  // namespace sparta

#endif  // SPARTA_COMMON_DAEMON_METRICS_H_
