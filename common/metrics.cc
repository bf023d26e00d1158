#include "common/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sparta {
namespace {

// Label values escape backslash, quote and newline (the format's rules).
std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string RenderLabels(const MetricLabels& labels) {
  std::string out;
  for (const auto& [key, value] : labels) {
    absl::StrAppend(&out, out.empty() ? "" : ",", key, "=\"", EscapeLabel(value), "\"");
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.9g", v);
}

const auto kProcessStart = std::chrono::steady_clock::now();

}  // namespace

void MetricWriter::Add(const std::string& name, const char* type, const std::string& help, double value,
                       const MetricLabels& labels) {
  Family& f = families_[name];
  f.type = type;
  f.help = help;
  f.samples.push_back({"", RenderLabels(labels), value});
}

void MetricWriter::Histogram(const std::string& name, const std::string& help,
                             const std::vector<std::pair<double, uint64_t>>& buckets, double sum, uint64_t count,
                             const MetricLabels& labels) {
  Family& f = families_[name];
  f.type = "histogram";
  f.help = help;
  const std::string rendered = RenderLabels(labels);
  auto with_le = [&](const std::string& le) {
    return absl::StrCat(rendered, rendered.empty() ? "" : ",", "le=\"", le, "\"");
  };
  for (const auto& [bound, observed] : buckets) {
    f.samples.push_back({"_bucket", with_le(FormatValue(bound)), static_cast<double>(observed)});
  }
  f.samples.push_back({"_bucket", with_le("+Inf"), static_cast<double>(count)});
  f.samples.push_back({"_sum", rendered, sum});
  f.samples.push_back({"_count", rendered, static_cast<double>(count)});
}

void MetricWriter::Counter(const std::string& name, const std::string& help, double value,
                           const MetricLabels& labels) {
  Add(name, "counter", help, value, labels);
}

void MetricWriter::Gauge(const std::string& name, const std::string& help, double value, const MetricLabels& labels) {
  Add(name, "gauge", help, value, labels);
}

void MetricWriter::Merge(const MetricWriter& other) {
  for (const auto& [name, family] : other.families_) {
    Family& f = families_[name];
    f.type = family.type;
    f.help = family.help;
    f.samples.insert(f.samples.end(), family.samples.begin(), family.samples.end());
  }
}

std::string MetricWriter::Render(const MetricLabels& common) const {
  const std::string common_text = RenderLabels(common);
  std::string out;
  for (const auto& [name, f] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", f.help, "\n# TYPE ", name, " ", f.type, "\n");
    for (const auto& [suffix, labels, value] : f.samples) {
      std::string all = common_text;
      if (!labels.empty()) absl::StrAppend(&all, all.empty() ? "" : ",", labels);
      absl::StrAppend(&out, name, suffix, all.empty() ? "" : "{" + all + "}", " ", FormatValue(value), "\n");
    }
  }
  return out;
}

void MetricsRegistry::AddCollector(Collector collector) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(collector));
}

void MetricsRegistry::SetCommonLabels(MetricLabels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  common_ = std::move(labels);
}

std::string MetricsRegistry::Render() const {
  MetricWriter out;
  // The process itself, as Prometheus's client libraries report it.
  long pages = 0, resident = 0;
  if (std::ifstream statm("/proc/self/statm"); statm >> pages >> resident) {
    out.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
              static_cast<double>(resident) * sysconf(_SC_PAGESIZE));
  }
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    out.Counter("process_cpu_seconds_total", "User and system CPU time spent in seconds.",
                usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
                    (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
  }
  out.Gauge("sparta_uptime_seconds", "Seconds since this daemon started.",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - kProcessStart).count());
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& collect : collectors_) collect(out);
  return out.Render(common_);
}

void MetricsSnapshot::Publish(MetricWriter samples) {
  std::lock_guard<std::mutex> lock(mu_);
  latest_ = std::move(samples);
}

void MetricsSnapshot::WriteTo(MetricWriter& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  out.Merge(latest_);
}

}  // namespace sparta
