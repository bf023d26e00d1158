// sparta-serve-bench: an open-loop load generator for sparta-serve (or any
// server of its HTTP API). Requests are due at a fixed rate whatever the
// server does, and each one's latency is measured from the moment it was
// due, not from when a connection was free to send it: a server that stalls
// makes the requests queued behind the stall late, and they count so
// (coordinated omission corrected, as wrk2 does). Each rate runs for a fixed
// time; the report is p50/p99/p99.9 latency and the rate achieved.
//
//   sparta-serve-bench --url http://127.0.0.1:8501 --model NAME --lines FILE
//       [--batch N] [--rates 250,500,1000] [--seconds S] [--connections C] [--json OUT]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double rate = 0, achieved = 0, p50 = 0, p99 = 0, p999 = 0, max = 0;
  uint64_t sent = 0, errors = 0;
};

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i];
}

Result RunRate(const std::string& host, int port, const std::string& path, const std::vector<std::string>& bodies,
               double rate, double seconds, int connections) {
  const uint64_t total = static_cast<uint64_t>(rate * seconds);
  // Every connection is opened, and has carried one request, before the
  // clock starts: what is measured is serving, not connection set-up.
  std::vector<std::unique_ptr<httplib::Client>> clients;
  for (int c = 0; c < connections; ++c) {
    auto& client = clients.emplace_back(std::make_unique<httplib::Client>(host, port));
    client->set_keep_alive(true);
    client->set_tcp_nodelay(true);
    client->set_read_timeout(10, 0);
    client->Post(path, bodies[c % bodies.size()], "application/json");
  }
  const auto start = Clock::now() + std::chrono::milliseconds(20);
  const auto interval = std::chrono::duration<double>(1.0 / rate);
  std::atomic<uint64_t> next{0}, errors{0};
  std::vector<std::vector<double>> latencies(connections);
  std::vector<std::thread> threads;
  Clock::time_point last_done = start;
  std::mutex done_mu;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client& client = *clients[c];
      for (uint64_t i; (i = next.fetch_add(1)) < total;) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(interval * static_cast<double>(i));
        std::this_thread::sleep_until(due);
        auto res = client.Post(path, bodies[i % bodies.size()], "application/json");
        const auto done = Clock::now();
        if (!res || res->status != 200) errors.fetch_add(1);
        latencies[c].push_back(std::chrono::duration<double, std::milli>(done - due).count());
        std::lock_guard<std::mutex> lock(done_mu);
        last_done = std::max(last_done, done);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  Result r;
  r.rate = rate;
  r.sent = total;
  r.errors = errors;
  r.achieved = total / std::chrono::duration<double>(last_done - start).count();
  r.max = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
  r.p50 = Percentile(all, 0.5);
  r.p99 = Percentile(all, 0.99);
  r.p999 = Percentile(all, 0.999);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("sparta-serve-bench: open-loop latency of sparta-serve at fixed request rates");
  std::string url = "http://127.0.0.1:8501", model, lines_path, json_out, label;
  int batch = 1, connections = 16;
  double seconds = 5;
  std::vector<double> rates{250, 500, 1000};
  app.add_option("--url", url, "the server, http://HOST:PORT");
  app.add_option("--model", model, "the model's NAME in /v1/models/NAME:predict")->required();
  app.add_option("--lines", lines_path, "input lines to send as instances (the test file)")->required();
  app.add_option("--batch", batch, "instances per request");
  app.add_option("--rates", rates, "requests per second, one run each")->delimiter(',');
  app.add_option("--seconds", seconds, "seconds per rate");
  app.add_option("--connections", connections, "concurrent connections (the most requests in flight)");
  app.add_option("--label", label, "a name for these runs in the JSON");
  app.add_option("--json", json_out, "append one JSON record per rate to this file");
  CLI11_PARSE(app, argc, argv);

  const std::string prefix = "http://";
  std::string hostport = url.rfind(prefix, 0) == 0 ? url.substr(prefix.size()) : url;
  const size_t colon = hostport.rfind(':');
  const std::string host = hostport.substr(0, colon);
  const int port = colon == std::string::npos ? 80 : std::stoi(hostport.substr(colon + 1));
  std::vector<std::string> lines;
  {
    std::ifstream in(lines_path);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  if (lines.empty()) {
    std::cerr << "sparta-serve-bench: no lines in " << lines_path << "\n";
    return 2;
  }
  std::vector<std::string> bodies;
  for (size_t i = 0; i + batch <= lines.size() && bodies.size() < 1000; i += batch) {
    std::vector<std::string> quoted;
    for (int j = 0; j < batch; ++j) quoted.push_back(sparta::JsonQuote(lines[i + j]));
    bodies.push_back(absl::StrCat("{\"instances\": [", absl::StrJoin(quoted, ", "), "]}"));
  }
  const std::string path = absl::StrCat("/v1/models/", model, ":predict");
  std::printf("%-12s %6s %9s %9s %9s %9s %9s %7s\n", "label", "batch", "rate/s", "achieved", "p50 ms", "p99 ms",
              "p99.9 ms", "errors");
  for (double rate : rates) {
    Result r = RunRate(host, port, path, bodies, rate, seconds, connections);
    std::printf("%-12s %6d %9.0f %9.0f %9.3f %9.3f %9.3f %7llu\n", label.c_str(), batch, r.rate, r.achieved, r.p50,
                r.p99, r.p999, static_cast<unsigned long long>(r.errors));
    std::fflush(stdout);
    if (!json_out.empty()) {
      std::ofstream out(json_out, std::ios::app);
      out << "{\"label\": " << sparta::JsonQuote(label) << ", \"batch\": " << batch << ", \"rate\": " << r.rate
          << ", \"achieved\": " << r.achieved << ", \"p50_ms\": " << r.p50 << ", \"p99_ms\": " << r.p99
          << ", \"p999_ms\": " << r.p999 << ", \"max_ms\": " << r.max << ", \"sent\": " << r.sent
          << ", \"errors\": " << r.errors << "}\n";
    }
  }
  return 0;
}
