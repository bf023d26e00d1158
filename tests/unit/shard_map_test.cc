// ShardMap: failover picks whole replicas only, and reports shards whose
// every copy is gone.
#include <catch2/catch.hpp>

#include "scheduler/shard_map.h"

namespace sparta {
namespace {

uint64_t NoneApplied(uint32_t, uint32_t) { return 0; }

TEST_CASE("a primary's death promotes a whole replica") {
  ShardMap map(8, 3, 2);  // shard s: primary s % 3, replica (s + 1) % 3
  CHECK(map.RemoveServer(1, NoneApplied).empty());
  for (uint32_t s = 0; s < 8; ++s) CHECK(map.owners()[s] != 1);
  CHECK(map.owners()[1] == 2);  // shard 1 was led by server 1, replicated on 2
}

TEST_CASE("two servers dying one after the other lose the shards that were on both") {
  ShardMap map(8, 3, 2);
  CHECK(map.RemoveServer(1, NoneApplied).empty());
  // New replicas restore the factor, but hold nothing until they report.
  const int added = map.RestoreReplication({0, 2}, /*epoch=*/2);
  CHECK(added > 0);
  CHECK(map.catching_up() == static_cast<size_t>(added));
  // Server 2 dies before any new replica is whole: the shards it led or
  // had just taken over have no whole copy left.
  const std::vector<uint32_t> lost = map.RemoveServer(2, NoneApplied);
  CHECK_FALSE(lost.empty());
  for (uint32_t s : lost) CHECK(map.owners()[s] == 2);  // not handed to an empty replica
  CHECK(std::find(lost.begin(), lost.end(), 1u) != lost.end());  // led by 1, then 2
}

TEST_CASE("a replica counts once it reports the shard whole in the view that placed it, or later") {
  ShardMap map(8, 3, 2);
  CHECK(map.RemoveServer(1, NoneApplied).empty());
  map.RestoreReplication({0, 2}, /*epoch=*/2);
  // A report of an older view says nothing about the new placement.
  CHECK(map.OnServerReport(0, 1, {}) == 0);
  CHECK(map.OnServerReport(2, 1, {}) == 0);
  std::vector<uint32_t> still;
  for (uint32_t s = 0; s < 8; ++s) {
    const auto& r = map.replicas(s);
    if (std::find(r.begin(), r.end(), 0u) != r.end()) still.push_back(s);
  }
  REQUIRE_FALSE(still.empty());
  // Server 0 reports one of its new replicas as still incomplete.
  map.OnServerReport(0, 2, {still[0]});
  map.OnServerReport(2, 2, {});
  CHECK(map.catching_up() == 1);
  map.OnServerReport(0, 3, {});
  CHECK(map.catching_up() == 0);
  CHECK(map.RemoveServer(2, NoneApplied).empty());
}

TEST_CASE("the catching-up state survives a scheduler restart through the view") {
  ShardMap map(8, 3, 2);
  map.RemoveServer(1, NoneApplied);
  map.RestoreReplication({0, 2}, 2);
  pb::ClusterView view;
  map.ToView(&view);
  ShardMap restarted(8, 3, 2);
  restarted.FromView(view);
  CHECK(restarted.catching_up() == map.catching_up());
  CHECK_FALSE(restarted.RemoveServer(2, NoneApplied).empty());
}

TEST_CASE("without replicas a dead server's shards are lost") {
  ShardMap map(8, 2, 1);
  const std::vector<uint32_t> lost = map.RemoveServer(0, NoneApplied);
  CHECK(lost == std::vector<uint32_t>{0, 2, 4, 6});
}

}  // namespace
}  // namespace sparta
