// sparta-serve-bench: an open-loop load generator for sparta-serve (or any
// server of its HTTP API). Requests are due at a fixed rate whatever the
// server does, and each one's latency is measured from the moment it was
// due, not from when a connection was free to send it: a server that stalls
// makes the requests queued behind the stall late, and they count so
// (coordinated omission corrected, as wrk2 does). Each rate runs for a fixed
// time; the report is p50/p99/p99.9 latency and the rate achieved.
//
// With --url tcp://HOST:PORT it speaks to the ZeroMQ endpoint instead
// (serving.zmq_port), one DEALER socket per connection.
//
//   sparta-serve-bench --url http://127.0.0.1:8501 --model NAME --lines FILE
//       [--batch N] [--rates 250,500,1000] [--seconds S] [--connections C] [--json OUT]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
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
#include "common/message.h"
#include "common/predict_message.h"
#include "common/socket_util.h"

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

// Sends request number `i` on one connection and waits for its answer;
// false for a failed one. Each connection's sender is used by one thread.
using Sender = std::function<bool(uint64_t i)>;

// Opens a connection for each concurrent sender.
using Connect = std::function<Sender()>;

Connect HttpConnect(const std::string& host, int port, const std::string& model,
                    const std::vector<std::vector<std::string>>& requests) {
  auto bodies = std::make_shared<std::vector<std::string>>();
  for (const auto& lines : requests) {
    std::vector<std::string> quoted;
    for (const std::string& line : lines) quoted.push_back(sparta::JsonQuote(line));
    bodies->push_back(absl::StrCat("{\"instances\": [", absl::StrJoin(quoted, ", "), "]}"));
  }
  const std::string path = absl::StrCat("/v1/models/", model, ":predict");
  return [=]() -> Sender {
    auto client = std::make_shared<httplib::Client>(host, port);
    client->set_keep_alive(true);
    client->set_tcp_nodelay(true);
    client->set_read_timeout(10, 0);
    return [client, bodies, path](uint64_t i) {
      auto res = client->Post(path, (*bodies)[i % bodies->size()], "application/json");
      return res && res->status == 200;
    };
  };
}

Connect ZmqConnect(const std::string& endpoint, const std::string& model,
                   const std::vector<std::vector<std::string>>& requests) {
  auto context = std::make_shared<zmq::context_t>(1);
  // Made once: what is measured is serving, not the client's encoding.
  auto prepared = std::make_shared<std::vector<sparta::PredictRequest>>();
  for (const auto& lines : requests) prepared->push_back(sparta::MakePredictRequest(model, lines, 0, 0));
  return [=]() -> Sender {
    auto socket = std::shared_ptr<zmq::socket_t>(new zmq::socket_t(*context, zmq::socket_type::dealer),
                                                 [context](zmq::socket_t* s) { delete s; });
    sparta::ConfigureSocket(*socket);
    socket->connect(endpoint);
    return [socket, prepared](uint64_t i) {
      const sparta::PredictRequest& request = (*prepared)[i % prepared->size()];
      sparta::pb::Header h = request.header;
      h.set_seq(i + 1);
      std::vector<zmq::message_t> parts;
      parts.emplace_back(request.frame.data(), request.frame.size());
      if (!sparta::SendMessage(*socket, h, &parts).ok()) return false;
      auto reply = sparta::AwaitResponse(*socket, i + 1, std::chrono::steady_clock::now() + std::chrono::seconds(10));
      return reply.ok() && reply->header.status() == 0;
    };
  };
}

Result RunRate(const Connect& connect, double rate, double seconds, int connections) {
  const uint64_t total = static_cast<uint64_t>(rate * seconds);
  // Every connection is opened, and has carried one request, before the
  // clock starts: what is measured is serving, not connection set-up.
  std::vector<Sender> senders;
  for (int c = 0; c < connections; ++c) {
    senders.push_back(connect());
    senders.back()(static_cast<uint64_t>(c));
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
      Sender& send = senders[c];
      for (uint64_t i; (i = next.fetch_add(1)) < total;) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(interval * static_cast<double>(i));
        std::this_thread::sleep_until(due);
        const bool ok = send(i);
        const auto done = Clock::now();
        if (!ok) errors.fetch_add(1);
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
  app.add_option("--url", url, "the server, http://HOST:PORT (HTTP) or tcp://HOST:PORT (ZeroMQ)");
  app.add_option("--model", model, "the model's NAME in /v1/models/NAME:predict")->required();
  app.add_option("--lines", lines_path, "input lines to send as instances (the test file)")->required();
  app.add_option("--batch", batch, "instances per request");
  app.add_option("--rates", rates, "requests per second, one run each")->delimiter(',');
  app.add_option("--seconds", seconds, "seconds per rate");
  app.add_option("--connections", connections, "concurrent connections (the most requests in flight)");
  app.add_option("--label", label, "a name for these runs in the JSON");
  app.add_option("--json", json_out, "append one JSON record per rate to this file");
  CLI11_PARSE(app, argc, argv);

  std::vector<std::string> lines;
  {
    std::ifstream in(lines_path);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  if (lines.empty()) {
    std::cerr << "sparta-serve-bench: no lines in " << lines_path << "\n";
    return 2;
  }
  std::vector<std::vector<std::string>> requests;
  for (size_t i = 0; i + batch <= lines.size() && requests.size() < 1000; i += batch) {
    requests.emplace_back(lines.begin() + i, lines.begin() + i + batch);
  }
  if (requests.empty()) {
    std::cerr << "sparta-serve-bench: fewer lines than --batch in " << lines_path << "\n";
    return 2;
  }
  Connect connect;
  if (url.rfind("tcp://", 0) == 0) {
    connect = ZmqConnect(url, model, requests);
  } else {
    const std::string prefix = "http://";
    std::string hostport = url.rfind(prefix, 0) == 0 ? url.substr(prefix.size()) : url;
    const size_t colon = hostport.rfind(':');
    const int port = colon == std::string::npos ? 80 : std::stoi(hostport.substr(colon + 1));
    connect = HttpConnect(hostport.substr(0, colon), port, model, requests);
  }
  std::printf("%-12s %6s %9s %9s %9s %9s %9s %7s\n", "label", "batch", "rate/s", "achieved", "p50 ms", "p99 ms",
              "p99.9 ms", "errors");
  for (double rate : rates) {
    Result r = RunRate(connect, rate, seconds, connections);
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
