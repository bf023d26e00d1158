#include "common/daemon_metrics.h"

namespace sparta {

DaemonMetrics::DaemonMetrics() {
  registry_.AddCollector([this](MetricWriter& out) { snapshot_.WriteTo(out); });
}

// The server goes first: no scrape may run while the rest is torn down.
DaemonMetrics::~DaemonMetrics() { server_.reset(); }

absl::Status DaemonMetrics::Start(const Config& config, const std::string& host) {
  auto server = StartMetricsServer(host, config.metrics.port, &registry_);
  if (!server.ok()) return server.status();
  server_ = *std::move(server);
  return absl::OkStatus();
}

void DaemonMetrics::SetIdentity(const std::string& role, int rank) {
  registry_.SetCommonLabels({{"role", role}, {"rank", std::to_string(rank)}});
}

bool DaemonMetrics::PublishDue() const {
  return std::chrono::steady_clock::now() - last_publish_ >= std::chrono::seconds(1);
}

void DaemonMetrics::Publish(MetricWriter samples) {
  snapshot_.Publish(std::move(samples));
  last_publish_ = std::chrono::steady_clock::now();
}

}  // namespace sparta
