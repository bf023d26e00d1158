// MetricsServer: serves a MetricsRegistry over HTTP, `GET /metrics`, for
// Prometheus (and `sparta-ctl metrics`) to scrape.
//
// It listens on the daemon's interface only (never on all interfaces) and
// answers one connection at a time on its own thread: a scrape is a few
// kilobytes and a handful per minute, so there is nothing to gain from
// concurrency, and a slow or hostile client is cut off after a short
// timeout and a size cap on the request instead of holding a thread.
//
// Thread-safe; the registry must outlive it.
#ifndef SPARTA_COMMON_METRICS_SERVER_H_
#define SPARTA_COMMON_METRICS_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/metrics.h"

namespace sparta {

class MetricsServer {
 public:
  // Binds host:port (port 0: one the OS picks) and starts serving.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& host, int port,
                                                              const MetricsRegistry* registry);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer(int listen_fd, int wake_fd, int port, const MetricsRegistry* registry);
  void Run();
  void Serve(int fd);

  const int listen_fd_;
  const int wake_fd_;  // eventfd: the destructor wakes the thread
  const int port_;
  const MetricsRegistry* const registry_;
  std::thread thread_;
};

// Starts the /metrics server a daemon's config asks for (metrics.port; -1:
// none) on `host`. Null when off.
absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(const std::string& host, int port,
                                                                  const MetricsRegistry* registry);

}  // namespace sparta

#endif  // SPARTA_COMMON_METRICS_SERVER_H_
