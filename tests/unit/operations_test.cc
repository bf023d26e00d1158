// The pieces behind monitoring and security: the Prometheus text a daemon
// serves (over a real HTTP socket), cluster key files, and the auth keys of
// the config.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "common/config.h"
#include "common/curve_keys.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "ctl/http_get.h"

namespace sparta::operations_test {
namespace {

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "-" + std::to_string(getpid()))).string();
}

TEST_CASE("metric families render once each, labelled and escaped") {
  MetricWriter w;
  w.Counter("sparta_requests_total", "Requests.", 3, {{"type", "pull"}});
  w.Counter("sparta_requests_total", "Requests.", 4, {{"type", "push"}});
  w.Gauge("sparta_a", "Quote \" here.", 0.5, {{"path", "a\"b\\c\nd"}});
  const std::string text = w.Render({{"role", "server"}, {"rank", "1"}});
  CHECK(text ==
        "# HELP sparta_a Quote \" here.\n# TYPE sparta_a gauge\n"
        "sparta_a{role=\"server\",rank=\"1\",path=\"a\\\"b\\\\c\\nd\"} 0.5\n"
        "# HELP sparta_requests_total Requests.\n# TYPE sparta_requests_total counter\n"
        "sparta_requests_total{role=\"server\",rank=\"1\",type=\"pull\"} 3\n"
        "sparta_requests_total{role=\"server\",rank=\"1\",type=\"push\"} 4\n");
}

TEST_CASE("the metrics server answers GET /metrics over HTTP, and only that") {
  MetricsRegistry registry(MetricLabels{{"role", "worker"}});
  std::atomic<int> scrapes{0};
  registry.AddCollector([&](MetricWriter& out) { out.Counter("sparta_scrapes_total", "Scrapes.", ++scrapes); });
  auto server = MetricsServer::Start("127.0.0.1", 0, &registry);
  REQUIRE(server.ok());
  const int port = (*server)->port();
  REQUIRE(port > 0);
  auto body = HttpGet("127.0.0.1", port, "/metrics", std::chrono::milliseconds(2000));
  REQUIRE(body.ok());
  CHECK(body->find("sparta_scrapes_total{role=\"worker\"} 1\n") != std::string::npos);
  CHECK(body->find("# TYPE process_resident_memory_bytes gauge") != std::string::npos);
  body = HttpGet("127.0.0.1", port, "/metrics", std::chrono::milliseconds(2000));
  REQUIRE(body.ok());
  CHECK(body->find("sparta_scrapes_total{role=\"worker\"} 2\n") != std::string::npos);
  auto missing = HttpGet("127.0.0.1", port, "/other", std::chrono::milliseconds(2000));
  REQUIRE_FALSE(missing.ok());
  CHECK(std::string(missing.status().message()).find("404") != std::string::npos);
}

TEST_CASE("cluster key files round-trip and bad ones are refused with their line") {
  const std::string path = TempPath("sparta-key");
  std::filesystem::remove(path);
  auto keys = NewCurveKeyPair();
  REQUIRE(keys.ok());
  REQUIRE(WriteCurveKeyFile(path, *keys).ok());
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  CHECK_FALSE(WriteCurveKeyFile(path, *keys).ok());  // never overwritten
  auto read = ReadCurveKeyFile(path);
  REQUIRE(read.ok());
  CHECK(read->public_key == keys->public_key);
  CHECK(read->secret_key == keys->secret_key);

  auto other = NewCurveKeyPair();
  REQUIRE(other.ok());
  {
    std::ofstream f(path, std::ios::trunc);
    f << "# comment\npublic-key: " << other->public_key << "\nsecret-key: " << keys->secret_key << "\n";
  }
  auto mismatched = ReadCurveKeyFile(path);
  REQUIRE_FALSE(mismatched.ok());
  CHECK(std::string(mismatched.status().message()).find("does not belong") != std::string::npos);
  {
    std::ofstream f(path, std::ios::trunc);
    f << "public-key: " << keys->public_key << "\nsecret-key: short\n";
  }
  auto bad = ReadCurveKeyFile(path);
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find(path + ":2: not a 40-character Z85") != std::string::npos);

  // The config loads the keys with cluster.auth: curve.
  std::filesystem::remove(path);
  REQUIRE(WriteCurveKeyFile(path, *keys).ok());
  auto config = ParseConfig("cluster: {scheduler: 'h:1', servers: 1, workers: 1, auth: curve, key_file: '" + path +
                                "'}\ndata: {train: x}\n",
                            "job.yaml", {});
  REQUIRE(config.ok());
  CHECK(config->cluster.curve_public == keys->public_key);
  std::filesystem::remove(path);
}

TEST_CASE("metrics.port and cluster.auth are checked with file, line and key") {
  const std::string base = "cluster: {scheduler: 'h:1', servers: 1, workers: 1}\ndata: {train: x}\n";
  auto port = ParseConfig(base + "metrics:\n  port: 70000\n", "job.yaml", {});
  REQUIRE_FALSE(port.ok());
  CHECK(std::string(port.status().message()).find("job.yaml:4") != std::string::npos);
  CHECK(std::string(port.status().message()).find("metrics.port") != std::string::npos);
  auto auth = ParseConfig(base, "job.yaml", {"cluster.auth=tls"});
  REQUIRE_FALSE(auth.ok());
  CHECK(std::string(auth.status().message()).find("cluster.auth") != std::string::npos);
}

}  // namespace
}  // namespace sparta::operations_test

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "scheduler/connection_watch.h"

namespace sparta::operations_test {
namespace {

TEST_CASE("a port probe tells a listening port from one nothing listens on") {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const uint32_t port = ntohs(addr.sin_port);
  // Bound but not listening: connections are refused, as for a dead process.
  CHECK(ProbePort("127.0.0.1", port, 200) == ProbeResult::kRefused);
  REQUIRE(listen(fd, 4) == 0);
  CHECK(ProbePort("127.0.0.1", port, 200) == ProbeResult::kListening);
  close(fd);
  CHECK(ProbePort("no-such-host.invalid", port, 200) == ProbeResult::kNoAnswer);
}

}  // namespace
}  // namespace sparta::operations_test
