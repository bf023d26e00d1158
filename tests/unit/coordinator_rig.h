// A JobCoordinator driven message by message, as the scheduler's event loop
// drives it, for the unit tests of the scheduler's logic.
#ifndef SPARTA_TESTS_UNIT_COORDINATOR_RIG_H_
#define SPARTA_TESTS_UNIT_COORDINATOR_RIG_H_

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "scheduler/job_coordinator.h"
#include "scheduler/state_store.h"

namespace sparta {
namespace rig {

using Clock = JobCoordinator::Clock;

struct Job {
  explicit Job(int servers = 2, int workers = 2, int replication = 1) : Job(Sized(servers, workers, replication)) {}
  // `store`: where the coordinator saves its state (default: as configured).
  explicit Job(Config c, std::unique_ptr<StateStore> store = nullptr) : config(std::move(c)) {
    coordinator = std::make_unique<JobCoordinator>(config);
    if (store != nullptr) coordinator->UseStateStore(std::move(store));
    REQUIRE(coordinator->Start(t0, /*metrics_port=*/0).ok());
  }
  static Config Sized(int servers, int workers, int replication = 1) {
    Config c;
    c.cluster.servers = servers;
    c.cluster.workers = workers;
    c.cluster.num_shards = 8;
    c.storage.replication_factor = replication;
    return c;
  }

  // Sends `h` from `peer`; returns what the coordinator answered.
  std::vector<JobCoordinator::Outgoing> Send(const std::string& peer, pb::Header h,
                                            Clock::time_point at = Clock::time_point{}) {
    coordinator->Dispatch(peer, h, at == Clock::time_point{} ? t0 : at);
    return coordinator->TakeOutbox();
  }

  std::vector<JobCoordinator::Outgoing> Register(const std::string& peer, pb::Role role) {
    pb::Header h;
    h.set_type(pb::REGISTER);
    h.mutable_node()->set_role(role);
    h.mutable_node()->set_rank(-1);
    h.mutable_node()->set_host("127.0.0.1");
    return Send(peer, h);
  }

  // Every node registers: servers s0, s1..., workers w0, w1...; returns
  // what the last registration caused.
  std::vector<JobCoordinator::Outgoing> RegisterAll() {
    std::vector<JobCoordinator::Outgoing> last;
    for (int s = 0; s < config.cluster.servers; ++s) last = Register(absl::StrCat("s", s), pb::SERVER);
    for (int w = 0; w < config.cluster.workers; ++w) last = Register(absl::StrCat("w", w), pb::WORKER);
    return last;
  }

  Config config;
  const Clock::time_point t0 = Clock::now();
  std::unique_ptr<JobCoordinator> coordinator;
};

// The scheduler's saved state, kept in memory: what a scheduler that takes
// over would load.
class MemoryStateStore : public StateStore {
 public:
  explicit MemoryStateStore(std::shared_ptr<std::optional<pb::SchedulerState>> saved) : saved_(std::move(saved)) {}
  absl::Status Save(const pb::SchedulerState& state) override {
    *saved_ = state;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<pb::SchedulerState>> Load() override { return *saved_; }
  std::string where() const override { return "memory"; }

 private:
  std::shared_ptr<std::optional<pb::SchedulerState>> saved_;
};

inline pb::Header Of(pb::MsgType type) {
  pb::Header h;
  h.set_type(type);
  return h;
}

// Peers that got a message of `type`.
inline std::set<std::string> To(const std::vector<JobCoordinator::Outgoing>& out, pb::MsgType type) {
  std::set<std::string> peers;
  for (const auto& o : out) {
    if (o.header.type() == type) peers.insert(o.routing_id);
  }
  return peers;
}

inline const pb::Header* Find(const std::vector<JobCoordinator::Outgoing>& out, pb::MsgType type) {
  for (const auto& o : out) {
    if (o.header.type() == type) return &o.header;
  }
  return nullptr;
}

}  // namespace rig
}  // namespace sparta

#endif  // SPARTA_TESTS_UNIT_COORDINATOR_RIG_H_
