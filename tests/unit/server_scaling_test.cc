// ServerScaling, without a coordinator: which servers stay, when a drain or
// a scale is refused and why, which ranks a scale down drains, how many
// servers a scale up asks for, how a joining server gets rows, and when a
// drained server is let go.
#include "scheduler/server_scaling.h"

#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"

namespace sparta::server_scaling_test {
namespace {

// A job's servers as the coordinator would hold them: ranks 0..servers-1,
// routing ids "s<rank>", 8 shards.
struct Servers {
  explicit Servers(int servers, int replication = 2, AckMode ack = AckMode::kAll)
      : config(Configure(servers, replication, ack)),
        members(servers, 0),
        map(config.cluster.num_shards, servers, replication),
        scaling(config, &members, &map) {
    for (int r = 0; r < servers; ++r) Add(r, /*join=*/false);
  }

  static Config Configure(int servers, int replication, AckMode ack) {
    Config c;
    c.cluster.servers = servers;
    c.cluster.workers = 0;
    c.cluster.num_shards = 8;
    c.storage.replication_factor = replication;
    c.storage.ack_mode = ack;
    return c;
  }

  uint32_t Add(int rank, bool join) {
    pb::NodeInfo info;
    info.set_role(pb::SERVER);
    info.set_rank(rank);
    info.set_join(join);
    auto added = members.Add(info, absl::StrCat("s", rank), Membership::Clock::time_point{});
    REQUIRE(added.ok());
    return added->id();
  }

  Membership::Node& Node(int rank) { return *members.FindByRoutingId(absl::StrCat("s", rank)); }

  // Every live server reports each shard it holds whole at `epoch`, and
  // each hand-off asked of it done: what servers say once a move's rows
  // are in.
  void ReportAllWhole(uint64_t epoch) {
    for (const uint32_t rank : members.LiveServers()) {
      map.OnServerReport(rank, epoch, {});
      std::vector<uint32_t> all(config.cluster.num_shards);
      for (uint32_t s = 0; s < all.size(); ++s) all[s] = s;
      map.OnHandedOff(rank, epoch, all);
    }
  }

  Config config;
  Membership members;
  ShardMap map;
  ServerScaling scaling;
};

TEST_CASE("the servers that stay: live and not draining, by rank") {
  Servers job(4);
  CHECK(job.scaling.Staying() == std::vector<uint32_t>{0, 1, 2, 3});
  job.Node(1).dead = true;
  REQUIRE(job.scaling.Drain(3, 1).ok());
  CHECK(job.scaling.Staying() == std::vector<uint32_t>{0, 2});
  CHECK(job.scaling.is_draining(job.Node(3).info.id()));
  CHECK(job.scaling.wanted() == 2);  // fewer wanted: the drained one does not come back
}

TEST_CASE("a drain is refused, saying why, and changes nothing then") {
  SECTION("no such live server") {
    Servers job(3);
    CHECK(absl::IsNotFound(job.scaling.Drain(7, 1)));
    job.Node(2).dead = true;
    CHECK(absl::IsNotFound(job.scaling.Drain(2, 1)));
  }
  SECTION("too few would stay to hold storage.replication_factor copies") {
    Servers job(2, /*replication=*/2);
    const absl::Status st = job.scaling.Drain(1, 1);
    CHECK(absl::IsFailedPrecondition(st));
    CHECK_THAT(std::string(st.message()), Catch::Contains("replication_factor"));
  }
  SECTION("storage.ack primary") {
    Servers job(3, /*replication=*/1, AckMode::kPrimary);
    const absl::Status st = job.scaling.Drain(2, 1);
    CHECK(absl::IsFailedPrecondition(st));
    CHECK_THAT(std::string(st.message()), Catch::Contains("storage.ack: all"));
  }
  SECTION("draining already") {
    Servers job(3, /*replication=*/1);
    REQUIRE(job.scaling.Drain(2, 1).ok());
    CHECK(absl::IsAlreadyExists(job.scaling.Drain(2, 2)));
  }
  Servers untouched(3);
  CHECK(untouched.scaling.draining().empty());
  CHECK(untouched.map.moving() == 0);
}

TEST_CASE("scale: below the replication factor refused, down drains the highest ranks, up counts drained ones out") {
  Servers job(4, /*replication=*/2);
  ServerScaling::ScalePlan refused = job.scaling.Scale(1, 1);
  CHECK(absl::IsInvalidArgument(refused.status));
  CHECK_FALSE(refused.accepted);
  CHECK(job.scaling.wanted() == 4);

  ServerScaling::ScalePlan down = job.scaling.Scale(2, 1);
  REQUIRE(down.status.ok());
  CHECK(down.accepted);
  CHECK(down.drains_begun == 2);
  CHECK(down.to_start == 0);
  CHECK_THAT(down.what, Catch::Contains("server-3") && Catch::Contains("server-2"));
  CHECK(job.scaling.Staying() == std::vector<uint32_t>{0, 1});
  CHECK(job.map.moving() > 0);

  // Two stay: four wanted means two to start, whatever the drained ones hold.
  ServerScaling::ScalePlan up = job.scaling.Scale(4, 2);
  REQUIRE(up.status.ok());
  CHECK(up.to_start == 2);
  CHECK(up.drains_begun == 0);
  CHECK_THAT(up.what, Catch::Contains("--join"));
  CHECK(job.scaling.wanted() == 4);

  ServerScaling::ScalePlan same = job.scaling.Scale(2, 3);
  CHECK(same.status.ok());
  CHECK(same.drains_begun == 0);
  CHECK_THAT(same.what, Catch::Contains("already"));
}

TEST_CASE("a drained server is let go once every copy it held has moved, and not before") {
  Servers job(3, /*replication=*/2);
  REQUIRE(job.scaling.Drain(2, 1).ok());
  REQUIRE(job.map.held_by(2) > 0);
  // Its copies are not whole at their targets yet: nothing moves, nobody leaves.
  ServerScaling::Advanced early = job.scaling.AdvanceMoves(2);
  CHECK(early.leaving.empty());
  CHECK(job.map.held_by(2) > 0);
  uint64_t epoch = 1;
  std::vector<std::string> leaving;
  for (int round = 0; round < 10 && leaving.empty(); ++round) {
    job.ReportAllWhole(epoch);
    leaving = job.scaling.AdvanceMoves(++epoch).leaving;
  }
  CHECK(leaving == std::vector<std::string>{"s2"});
  CHECK(job.map.held_by(2) == 0);
  CHECK(job.map.moving() == 0);
  // The coordinator marks it dead; it is named once.
  job.Node(2).dead = true;
  CHECK(job.scaling.AdvanceMoves(++epoch).leaving.empty());
}

TEST_CASE("a server that joins gets rows moved to it by what the primaries report, and raises the servers wanted") {
  Servers job(2, /*replication=*/1);
  for (int rank = 0; rank < 2; ++rank) {
    pb::ServerStats& stats = job.Node(rank).stats;
    for (uint32_t s = 0; s < 8; ++s) {
      stats.add_shard_rows(job.map.owners()[s] == static_cast<uint32_t>(rank) ? 1000 : 0);
    }
  }
  CHECK(job.scaling.ShardRows() == std::vector<uint64_t>(8, 1000));
  job.Add(2, /*join=*/true);
  const ServerScaling::Joined joined = job.scaling.OnServerJoined(1);
  CHECK(joined.placed == 0);  // no copy was short
  CHECK(joined.moving >= 2);  // about a third of 8000 rows
  CHECK(job.scaling.wanted() == 3);
  // Redrain has nothing to do: no server drains.
  CHECK(job.scaling.Redrain(2) == 0);
}

TEST_CASE("copies of a drained server whose target died move again, to servers that stay") {
  Servers job(4, /*replication=*/1);
  REQUIRE(job.scaling.Drain(3, 1).ok());
  const size_t moving = job.map.moving();
  REQUIRE(moving > 0);
  // A target dies: its moves end with it (as OnServerLost removes it).
  const uint32_t target = 0;
  job.Node(static_cast<int>(target)).dead = true;
  (void)job.map.RemoveServer(target, [](uint32_t, uint32_t) -> uint64_t { return 0; });
  const size_t left = job.map.moving();
  const int again = job.scaling.Redrain(2);
  CHECK(again == static_cast<int>(moving - left));
  CHECK(job.map.moving() == moving);
}

}  // namespace
}  // namespace sparta::server_scaling_test
