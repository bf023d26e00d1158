// MetricsRegistry: what a daemon exposes at /metrics, in the Prometheus text
// exposition format (version 0.0.4).
//
// A daemon registers collectors: functions that, at scrape time, write the
// current value of its metrics into a MetricWriter. Counters and gauges stay
// where they live (atomics in the server, the trainer's progress, ...), so
// the hot path pays nothing for being observed. A collector runs on the
// metrics server's thread and must be thread-safe: it reads atomics, or a
// snapshot the owning thread publishes under a lock (MetricsSnapshot).
//
// Thread-safe.
#ifndef SPARTA_COMMON_METRICS_H_
#define SPARTA_COMMON_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace sparta {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class MetricWriter {
 public:
  void Counter(const std::string& name, const std::string& help, double value, const MetricLabels& labels = {});
  void Gauge(const std::string& name, const std::string& help, double value, const MetricLabels& labels = {});
  // A histogram: `buckets` are (upper bound, observations <= it) pairs in
  // increasing order, cumulative as the format wants; +Inf is `count`.
  void Histogram(const std::string& name, const std::string& help,
                 const std::vector<std::pair<double, uint64_t>>& buckets, double sum, uint64_t count,
                 const MetricLabels& labels = {});
  // Adds every sample of `other`.
  void Merge(const MetricWriter& other);
  // The exposition text, one family per name (HELP and TYPE once), sorted;
  // `common` labels go first on every sample.
  std::string Render(const MetricLabels& common = {}) const;

 private:
  struct Sample {
    std::string suffix;  // after the family's name: "" or a histogram's _bucket, _sum, _count
    std::string labels;  // rendered
    double value;
  };
  struct Family {
    std::string type, help;
    std::vector<Sample> samples;
  };
  void Add(const std::string& name, const char* type, const std::string& help, double value,
           const MetricLabels& labels);
  std::map<std::string, Family> families_;
};

class MetricsRegistry {
 public:
  using Collector = std::function<void(MetricWriter&)>;
  // `common` labels go on every sample (role, rank).
  explicit MetricsRegistry(MetricLabels common = {}) : common_(std::move(common)) {}

  void AddCollector(Collector collector);
  void SetCommonLabels(MetricLabels labels);
  // Runs every collector; adds the process's own figures (resident memory,
  // CPU seconds, uptime).
  std::string Render() const;

 private:
  mutable std::mutex mu_;
  MetricLabels common_;
  std::vector<Collector> collectors_;
};

// A set of samples one thread computes from state it alone may read (the
// scheduler's membership) and publishes for the scrape thread.
class MetricsSnapshot {
 public:
  void Publish(MetricWriter samples);
  void WriteTo(MetricWriter& out) const;

 private:
  mutable std::mutex mu_;
  MetricWriter latest_;
};

}  // namespace sparta

#endif  // SPARTA_COMMON_METRICS_H_
