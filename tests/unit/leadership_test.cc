// Leadership and EtcdStateStore against a real etcd (Debian's etcd-server,
// started here on free loopback ports): one scheduler leads at a time, a
// leader that lost its lease can write nothing, a standby sees the job end
// instead of leading it, and a later job under the same name starts afresh.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "scheduler/etcd_client.h"
#include "scheduler/etcd_state_store.h"
#include "scheduler/leadership.h"

extern char** environ;

namespace sparta::leadership_test {
namespace {

using namespace std::chrono_literals;
using Outcome = Leadership::Outcome;

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// An etcd process with its data in a temporary folder; killed at scope exit.
class Etcd {
 public:
  Etcd() {
    char tmpl[] = "/tmp/sparta-etcd-XXXXXX";
    dir_ = mkdtemp(tmpl);
    const int client = FreePort(), peer = FreePort();
    endpoint_ = "127.0.0.1:" + std::to_string(client);
    const std::string client_url = "http://" + endpoint_, peer_url = "http://127.0.0.1:" + std::to_string(peer);
    std::vector<std::string> args = {"etcd", "--data-dir", dir_ + "/data", "--name", "default",
                                     "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                                     "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                                     "--initial-cluster", "default=" + peer_url};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    const std::string log = dir_ + "/etcd.log";
    posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&files, 1, 2);
    spawned_ = posix_spawnp(&pid_, "etcd", &files, nullptr, argv.data(), environ) == 0;
    posix_spawn_file_actions_destroy(&files);
  }
  ~Etcd() {
    if (spawned_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }
  // Whether it answers within 30 s (polled; it starts in about a second).
  bool Ready() const {
    if (!spawned_) return false;
    EtcdClient probe({endpoint_}, 500ms);
    for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
      if (probe.Get("/probe").ok()) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string dir_, endpoint_;
  pid_t pid_ = 0;
  bool spawned_ = false;
};

// A scheduler's view of etcd: its own client and its own leadership.
struct Candidate {
  Candidate(const std::string& endpoint, const std::string& self)
      : etcd({endpoint}, 1s), leadership(&etcd, "/sparta/test/", self, 2), store(&etcd, &leadership) {}
  // Campaigns; with `looks`, stops after that many looks at etcd.
  Outcome Campaign(int looks = -1) {
    int n = 0;
    auto outcome = leadership.Campaign([&] { return looks >= 0 && n++ >= looks; }, &ended, 10s);
    REQUIRE(outcome.ok());
    return *outcome;
  }
  EtcdClient etcd;
  Leadership leadership;
  EtcdStateStore store;
  std::string ended;
};

TEST_CASE("etcd leadership: one leader, a leader whose lease ended writes nothing, a standby sees the end",
          "[etcd]") {
  Etcd etcd;
  REQUIRE(etcd.Ready());
  Candidate a(etcd.endpoint(), "a:1"), b(etcd.endpoint(), "b:2"), c(etcd.endpoint(), "c:3");
  REQUIRE(a.Campaign() == Outcome::kLeading);
  pb::SchedulerState state;
  state.set_epoch(7);
  REQUIRE(a.store.Save(state).ok());
  // While a leads, b stands by.
  CHECK(b.Campaign(/*looks=*/3) == Outcome::kStopped);

  // a's lease ends, as when a dies or is cut off: b leads and takes the state over.
  EtcdClient admin({etcd.endpoint()}, 1s);
  auto key = admin.Get("/sparta/test/leader");
  REQUIRE(key.ok());
  REQUIRE(key->has_value());
  CHECK((*key)->value() == "a:1");
  REQUIRE(admin.Revoke((*key)->lease()).ok());
  REQUIRE(b.Campaign() == Outcome::kLeading);
  auto taken = b.store.Load();
  REQUIRE(taken.ok());
  REQUIRE(taken->has_value());
  CHECK((*taken)->epoch() == 7);

  // a does not know yet: its writes are refused, and its next renewal tells it.
  state.set_epoch(8);
  CHECK(absl::IsFailedPrecondition(a.store.Save(state)));
  CHECK(absl::IsFailedPrecondition(a.leadership.Renew(Leadership::Clock::now() + 10s)));
  state.set_epoch(9);
  REQUIRE(b.store.Save(state).ok());
  auto saved = b.store.Load();
  REQUIRE(saved.ok());
  CHECK((*saved)->epoch() == 9);
  CHECK(b.leadership.Renew(Leadership::Clock::now() + 10s).ok());

  // c stood by while b led; b ends the job: c exits instead of leading it.
  CHECK(c.Campaign(/*looks=*/1) == Outcome::kStopped);
  REQUIRE(b.leadership.End("ok").ok());
  CHECK(c.Campaign() == Outcome::kJobEnded);
  CHECK(c.ended == "ok");

  // A later job under the same name: its first scheduler leads.
  Candidate d(etcd.endpoint(), "d:4");
  CHECK(d.Campaign() == Outcome::kLeading);
}

TEST_CASE("etcd state: a job with many work units is saved whole, and one too large is refused by name", "[etcd]") {
  Etcd etcd;
  REQUIRE(etcd.Ready());
  Candidate a(etcd.endpoint(), "a:1");
  REQUIRE(a.Campaign() == Outcome::kLeading);
  // 500 files cut into 8 units each, 20 epochs ahead: 80k units, about 4 MiB
  // serialized, more than twice what etcd takes in one request.
  pb::SchedulerState state;
  state.set_epoch(3);
  pb::WorkPoolState* work = state.mutable_work();
  uint64_t id = 0;
  for (uint32_t epoch = 1; epoch <= 20; ++epoch) {
    for (int file = 0; file < 500; ++file) {
      for (uint64_t part = 0; part < 8; ++part) {
        pb::WorkRange* unit = work->add_pending();
        unit->set_epoch(epoch);
        unit->set_path("/data/criteo/day_" + std::to_string(file / 24) + "/part-" + std::to_string(file) + ".tsv");
        unit->set_begin(part << 26);
        unit->set_end((part + 1) << 26);
        unit->set_id(++id);
      }
    }
  }
  REQUIRE(state.ByteSizeLong() > 3 * 1024 * 1024);
  REQUIRE(a.store.Save(state).ok());
  auto loaded = a.store.Load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->SerializeAsString() == state.SerializeAsString());
  EtcdClient admin({etcd.endpoint()}, 1s);
  auto value = admin.Get("/sparta/test/state");
  REQUIRE(value.ok());
  INFO("80k work units: " << state.ByteSizeLong() << " bytes of state, " << (*value)->value().size() << " in etcd");

  // Random bytes do not compress: refused, with what to change.
  pb::SchedulerState noise;
  std::string bytes(3 << 20, '\0');
  uint64_t x = 88172645463325252ull;
  for (char& c : bytes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  noise.add_nodes()->set_routing_id(bytes);
  const absl::Status refused = a.store.Save(noise);
  CHECK(absl::IsResourceExhausted(refused));
  CHECK_THAT(std::string(refused.message()), Catch::Contains("data.split_size"));
  // What was saved before stays.
  auto kept = a.store.Load();
  REQUIRE(kept.ok());
  CHECK((*kept)->epoch() == 3);

  // A value that is not a saved state is reported, not taken over.
  REQUIRE(admin.Put("/sparta/test/state", "not a state").ok());
  auto corrupt = a.store.Load();
  CHECK(absl::IsDataLoss(corrupt.status()));
}

TEST_CASE("etcd leadership: a standby gives up when etcd does not answer for the grace", "[etcd]") {
  EtcdClient nowhere({"127.0.0.1:" + std::to_string(FreePort())}, 200ms);
  Leadership standby(&nowhere, "/sparta/test/", "a:1", 2);
  std::string ended;
  auto outcome = standby.Campaign([] { return false; }, &ended, 1s);
  REQUIRE_FALSE(outcome.ok());
  CHECK(absl::IsUnavailable(outcome.status()));
  CHECK_THAT(std::string(outcome.status().message()), Catch::Contains("no answer from etcd"));
}

}  // namespace
}  // namespace sparta::leadership_test
