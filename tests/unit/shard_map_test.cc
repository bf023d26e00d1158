// ShardMap: failover picks whole replicas only, and reports shards whose
// every copy is gone.
#include <algorithm>
#include <map>

#include <catch2/catch.hpp>

#include "scheduler/shard_map.h"

namespace sparta::shard_map_test {
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

TEST_CASE("draining a server moves each of its copies to a server without one, which takes over once whole") {
  ShardMap map(8, 3, 1);  // no replicas: shard s on server s % 3
  REQUIRE(map.held_by(1) == 3);  // shards 1, 4, 7
  CHECK(map.BeginDrain(1, {0, 2}, /*epoch=*/2) == 3);
  CHECK(map.moving() == 3);
  // Until the targets are whole, server 1 still leads its shards (the
  // targets follow them as replicas, catching up).
  for (uint32_t s : {1u, 4u, 7u}) {
    CHECK(map.owners()[s] == 1);
    REQUIRE(map.replicas(s).size() == 1);
  }
  CHECK(map.AdvanceMoves(3) == 0);
  // One target reports one shard still incomplete.
  const uint32_t slow = map.replicas(4)[0];
  map.OnServerReport(0, 2, slow == 0 ? std::vector<uint32_t>{4} : std::vector<uint32_t>{});
  map.OnServerReport(2, 2, slow == 2 ? std::vector<uint32_t>{4} : std::vector<uint32_t>{});
  // The whole ones wait for the last: server 1's shards hand off together.
  CHECK(map.AdvanceMoves(3) == 0);
  CHECK(map.OnHandedOff(1, 3, {1, 7}) == 0);  // not handing off
  map.OnServerReport(slow, 2, {});
  // All start handing off (view 3 marks them); the primary stays.
  CHECK(map.AdvanceMoves(3) == 3);
  pb::ClusterView view;
  map.ToView(&view);
  for (uint32_t s : {1u, 4u, 7u}) CHECK(view.replicas(s).handing_off());
  CHECK(map.owners()[1] == 1);
  CHECK(map.AdvanceMoves(4) == 0);  // nothing until the primary has handed off
  // A report from a view before the marking one, or from another server, says nothing.
  CHECK(map.OnHandedOff(1, 2, {1, 7}) == 0);
  CHECK(map.OnHandedOff(0, 3, {1, 7}) == 0);
  CHECK(map.OnHandedOff(1, 3, {1, 7}) == 2);
  CHECK(map.AdvanceMoves(4) == 2);
  CHECK(map.owners()[4] == 1);  // still handing off
  CHECK(map.owners()[1] != 1);
  CHECK(map.replicas(1).empty());
  CHECK(map.held_by(1) == 1);
  CHECK(map.OnHandedOff(1, 3, {4}) == 1);
  CHECK(map.AdvanceMoves(5) == 1);
  CHECK(map.held_by(1) == 0);
  CHECK(map.moving() == 0);
  map.ToView(&view);
  // Every shard has one copy, on servers 0 and 2, spread evenly; none hands off.
  for (uint32_t s = 0; s < 8; ++s) {
    CHECK(map.replicas(s).empty());
    CHECK_FALSE(view.replicas(s).handing_off());
  }
  CHECK(map.held_by(0) + map.held_by(2) == 8);
  CHECK(std::abs(map.held_by(0) - map.held_by(2)) <= 1);
}

TEST_CASE("hand-offs go in batches: a server's primaries once all are whole, one batch at a time") {
  // Each batch parks every request that touches it until its switch; marked
  // one after another, their waits would make pause after pause.
  ShardMap map(12, 4, 1);  // shard s on server s % 4
  REQUIRE(map.BeginDrain(1, {0, 2}, /*epoch=*/2) == 3);  // shards 1, 5, 9
  auto whole_at_targets = [&](std::vector<uint32_t> whole, std::vector<uint32_t> moving, uint64_t view = 2) {
    for (uint32_t target : {0u, 2u, 3u}) {
      std::vector<uint32_t> incomplete;
      for (uint32_t s : moving) {
        if (map.replicas(s)[0] == target && std::find(whole.begin(), whole.end(), s) == whole.end()) {
          incomplete.push_back(s);
        }
      }
      map.OnServerReport(target, view, incomplete);
    }
  };
  whole_at_targets({1}, {1, 5, 9});
  CHECK(map.AdvanceMoves(3) == 0);  // 5 and 9 are not whole yet
  whole_at_targets({1, 5, 9}, {1, 5, 9});
  CHECK(map.AdvanceMoves(3) == 3);  // server 1's batch
  CHECK(map.handing_off() == 3);
  // Server 3 is drained too, and its shards are whole at once: they wait
  // until server 1's batch has switched.
  REQUIRE(map.BeginDrain(3, {0, 2}, /*epoch=*/3) == 3);  // shards 3, 7, 11
  whole_at_targets({3, 7, 11}, {3, 7, 11}, /*view=*/3);
  CHECK(map.AdvanceMoves(4) == 0);
  CHECK(map.OnHandedOff(1, 3, {1, 5, 9}) == 3);
  CHECK(map.AdvanceMoves(4) == 3);  // server 1's switch; the next batch waits for the next view
  CHECK(map.handing_off() == 0);
  CHECK(map.AdvanceMoves(5) == 3);
  pb::ClusterView view;
  map.ToView(&view);
  for (uint32_t s : {3u, 7u, 11u}) CHECK(view.replicas(s).handing_off());
  CHECK(map.OnHandedOff(3, 5, {3, 7, 11}) == 3);
  CHECK(map.AdvanceMoves(6) == 3);
  CHECK(map.held_by(1) + map.held_by(3) == 0);
}

TEST_CASE("draining with replicas keeps the replication factor and never doubles a copy on one server") {
  ShardMap map(8, 3, 2);  // shard s: primary s % 3, replica (s + 1) % 3
  // Server 2 leads shards 2 and 5 and replicates 1, 4 and 7.
  CHECK(map.BeginDrain(2, {0, 1}, 2) == 5);
  map.OnServerReport(0, 2, {});
  map.OnServerReport(1, 2, {});
  // The replica copies move at once; the two primaries hand off first.
  CHECK(map.AdvanceMoves(3) == 5);
  CHECK(map.held_by(2) == 2);
  CHECK(map.OnHandedOff(2, 3, {2, 5}) == 2);
  CHECK(map.AdvanceMoves(4) == 2);
  CHECK(map.held_by(2) == 0);
  for (uint32_t s = 0; s < 8; ++s) {
    REQUIRE(map.replicas(s).size() == 1);
    CHECK(map.replicas(s)[0] != map.owners()[s]);
  }
}

TEST_CASE("a move begins only from a server that holds the shard to one that does not, once per shard") {
  ShardMap map(4, 3, 2);  // shard 0: primary 0, replica 1
  CHECK_FALSE(map.BeginMove(0, 2, 1, 2));  // 2 holds no copy
  CHECK_FALSE(map.BeginMove(0, 0, 1, 2));  // 1 holds one already
  CHECK(map.BeginMove(0, 0, 2, 2));
  CHECK_FALSE(map.BeginMove(0, 1, 2, 2));  // moving already
  CHECK(map.moving() == 1);
}

TEST_CASE("a move whose target dies ends, the drained server keeps leading the shard") {
  ShardMap map(4, 2, 1);  // shards 0, 2 on server 0; 1, 3 on server 1
  CHECK(map.BeginDrain(1, {0}, 2) == 2);
  CHECK(map.RemoveServer(0, NoneApplied).size() == 2);  // 0's own shards had no other copy
  CHECK(map.moving() == 0);
  CHECK(map.owners()[1] == 1);
  CHECK(map.owners()[3] == 1);
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

TEST_CASE("moves under way survive a scheduler restart, a hand-off starting over") {
  ShardMap map(8, 3, 1);  // shard s on server s % 3
  REQUIRE(map.BeginDrain(1, {0, 2}, /*epoch=*/2) == 3);  // shards 1, 4, 7
  for (uint32_t target : {0u, 2u}) map.OnServerReport(target, 2, {});
  REQUIRE(map.AdvanceMoves(3) == 3);  // handing off at view 3
  pb::ClusterView view;
  map.ToView(&view);
  pb::SchedulerState state;
  map.SaveMoves(state.mutable_moves());
  REQUIRE(state.moves_size() == 3);

  ShardMap restarted(8, 3, 1);
  restarted.FromView(view);
  // A move that no longer fits (its shard moved on, or one server lost its
  // copy) is dropped, not taken back.
  pb::ShardMove* stale = state.add_moves();
  stale->set_shard(0);
  stale->set_from(0);
  stale->set_to(1);
  CHECK(restarted.RestoreMoves(state.moves()) == 3);
  CHECK(restarted.moving() == 3);
  // The new scheduler's first view ends the old hand-off; the primary's
  // report of it, taken by the old scheduler, is not waited for.
  CHECK(restarted.handing_off() == 0);
  pb::ClusterView next;
  restarted.ToView(&next);
  for (uint32_t s : {1u, 4u, 7u}) CHECK_FALSE(next.replicas(s).handing_off());
  CHECK(restarted.OnHandedOff(1, 3, {1, 4, 7}) == 0);
  // The moves then go on: hand-off, switch, and server 1 holds nothing.
  CHECK(restarted.AdvanceMoves(5) == 3);
  CHECK(restarted.OnHandedOff(1, 5, {1, 4, 7}) == 3);
  CHECK(restarted.AdvanceMoves(6) == 3);
  CHECK(restarted.held_by(1) == 0);
  CHECK(restarted.moving() == 0);
  for (uint32_t s : {1u, 4u, 7u}) CHECK(restarted.replicas(s).empty());
}

TEST_CASE("copies lost with a server go to servers that stay, and a fresh one leaves moving shards alone") {
  ShardMap map(8, 4, 2);  // shard s: primary s % 4, replica (s + 1) % 4
  REQUIRE(map.BeginDrain(3, {0, 1, 2}, 2) > 0);
  const std::map<uint32_t, ShardMap::Move> moving = map.moves();
  map.RemoveServer(0, NoneApplied);
  // Server 3 (drained) is not among those that stay: no new copy goes there.
  const int before = map.held_by(3);
  map.RestoreReplication({1, 2}, 3);
  CHECK(map.held_by(3) == before);
  // A fresh server takes replicas of shards that do not move only.
  std::vector<std::vector<uint32_t>> copies;
  for (uint32_t s = 0; s < 8; ++s) copies.push_back(map.replicas(s));
  map.AddServer(4, {1, 2, 4}, 4);
  for (const auto& [s, move] : map.moves()) CHECK(map.replicas(s) == copies[s]);
  CHECK_FALSE(moving.empty());
}

TEST_CASE("without replicas a dead server's shards are lost") {
  ShardMap map(8, 2, 1);
  const std::vector<uint32_t> lost = map.RemoveServer(0, NoneApplied);
  CHECK(lost == std::vector<uint32_t>{0, 2, 4, 6});
}

}  // namespace
}  // namespace sparta::shard_map_test
