// PlanViewChange: what a server does on a new cluster view (failover,
// re-replication, a replica waiting for its rows, a server fenced out),
// decided from the old and new views alone.
#include "server/view_change.h"

#include <catch2/catch.hpp>

namespace sparta::view_change_test {
namespace {

using Pairs = std::vector<std::pair<uint32_t, uint32_t>>;

// `owners[s]`: shard s's primary; `replicas[s]`: its replicas; `servers`:
// the ranks the view lists.
pb::ClusterView View(uint64_t epoch, std::vector<uint32_t> owners, std::vector<std::vector<uint32_t>> replicas,
                     std::vector<uint32_t> servers) {
  pb::ClusterView view;
  view.set_epoch(epoch);
  for (size_t s = 0; s < owners.size(); ++s) {
    view.add_shard_owner(owners[s]);
    auto* r = view.add_replicas();
    for (uint32_t rank : replicas[s]) r->add_ranks(rank);
  }
  for (uint32_t rank : servers) {
    auto* node = view.add_nodes();
    node->set_role(pb::SERVER);
    node->set_rank(rank);
  }
  auto* worker = view.add_nodes();
  worker->set_role(pb::WORKER);
  worker->set_rank(0);
  return view;
}

// 4 shards over servers 0, 1, 2; shard s led by s % 3 and replicated on (s + 1) % 3.
pb::ClusterView Healthy() { return View(1, {0, 1, 2, 0}, {{1}, {2}, {0}, {1}}, {0, 1, 2}); }

TEST_CASE("a view that does not list the server fences it, and plans nothing else", "[view_change]") {
  const ShardView before(Healthy());
  const ViewChange change = PlanViewChange(before, View(2, {0, 2, 2, 0}, {{}, {}, {0}, {}}, {0, 2}), 1);
  CHECK_FALSE(change.listed);
  CHECK(change.promoted == 0);
  CHECK(change.snapshots.empty());
  CHECK(change.incomplete.empty());
}

TEST_CASE("the same shard map under a new epoch changes nothing", "[view_change]") {
  const ShardView before(Healthy());
  pb::ClusterView again = Healthy();
  again.set_epoch(2);
  for (uint32_t me : {0u, 1u, 2u}) {
    const ViewChange change = PlanViewChange(before, again, me);
    CHECK(change.listed);
    CHECK(change.promoted == 0);
    CHECK(change.snapshots.empty());
    CHECK(change.incomplete.empty());
    CHECK(change.dropped.empty());
  }
}

TEST_CASE("failover: the replica is promoted, and streams the shard to its new replica", "[view_change]") {
  const ShardView before(Healthy());
  // Server 1 died. Shard 1 (led by 1, replicated on 2) fails over to 2, which
  // takes 0 as its new replica; shard 0 and 3 lose their replica 1 and get 2.
  const pb::ClusterView after = View(2, {0, 2, 2, 0}, {{2}, {0}, {0}, {2}}, {0, 2});
  const ViewChange at2 = PlanViewChange(before, after, 2);
  CHECK(at2.listed);
  CHECK(at2.promoted == 1);
  CHECK(at2.snapshots == Pairs{{1, 0}});
  CHECK(at2.incomplete == std::vector<uint32_t>{0, 3});  // new to server 2: wait for server 0's streams
  const ViewChange at0 = PlanViewChange(before, after, 0);
  CHECK(at0.promoted == 0);
  CHECK(at0.snapshots == Pairs{{0, 2}, {3, 2}});
  CHECK(at0.incomplete == std::vector<uint32_t>{1});
}

TEST_CASE("a restarted server rejoins as a replica: its primaries stream to it, it waits", "[view_change]") {
  // Before: server 1 gone, everything on 0 and 2 without replicas.
  const ShardView before(View(2, {0, 2, 2, 0}, {{}, {}, {}, {}}, {0, 2}));
  const pb::ClusterView after = View(3, {0, 2, 2, 0}, {{1}, {1}, {}, {}}, {0, 1, 2});
  CHECK(PlanViewChange(before, after, 0).snapshots == Pairs{{0, 1}});
  CHECK(PlanViewChange(before, after, 2).snapshots == Pairs{{1, 1}});
  const ViewChange at1 = PlanViewChange(before, after, 1);
  CHECK(at1.listed);
  CHECK(at1.snapshots.empty());
  CHECK(at1.incomplete == std::vector<uint32_t>{0, 1});
}

TEST_CASE("a first view: every replica of a shard this server leads is new", "[view_change]") {
  const ViewChange change = PlanViewChange(ShardView(), Healthy(), 0);
  CHECK(change.promoted == 2);
  CHECK(change.snapshots == Pairs{{0, 1}, {3, 1}});
  CHECK(change.incomplete == std::vector<uint32_t>{2});
}

TEST_CASE("a stream is wanted while this server leads the shard and the peer replicates it", "[view_change]") {
  const ShardView healthy(Healthy());
  CHECK(StreamStillWanted(healthy, 0, 1, 0));
  CHECK_FALSE(StreamStillWanted(healthy, 0, 2, 0));  // 2 does not replicate shard 0
  CHECK_FALSE(StreamStillWanted(healthy, 1, 0, 0));  // 1 does not lead shard 0
  const ShardView moved(View(2, {2, 1, 2, 0}, {{0}, {2}, {0}, {1}}, {0, 1, 2}));
  CHECK_FALSE(StreamStillWanted(moved, 0, 1, 0));  // shard 0 moved to server 2
}

TEST_CASE("a copy that moved away is dropped, and one that stays, or a first view, drops nothing", "[view_change]") {
  const ShardView before(Healthy());
  // Server 1 is drained: shard 1, which it led, is now led by 2, and its
  // replica copies of shards 0 and 3 are now on server 2.
  const pb::ClusterView after = View(2, {0, 2, 2, 0}, {{2}, {0}, {0}, {2}}, {0, 1, 2});
  const ViewChange gone = PlanViewChange(before, after, 1);
  CHECK(gone.listed);
  CHECK(gone.dropped == std::vector<uint32_t>{0, 1, 3});
  // Server 0 keeps what it had (and gains shard 1's replica): drops nothing.
  CHECK(PlanViewChange(before, after, 0).dropped.empty());
  // Server 2 keeps its copies of shards 1 and 2, and gains 0 and 3.
  CHECK(PlanViewChange(before, after, 2).dropped.empty());
  // A first view: nothing was held before.
  CHECK(PlanViewChange(ShardView(), Healthy(), 1).dropped.empty());
}

}  // namespace
}  // namespace sparta::view_change_test
