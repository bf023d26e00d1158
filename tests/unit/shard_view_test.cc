// ShardView: a view's shard map read one way by every daemon. Keys go to
// their shard's primary (or to each of its replicas) exactly once, in
// request order; a request whose keys all go to the same servers is not
// split; rows gathered by position are the rows of those keys.
#include "common/shard_view.h"

#include <random>

#include <catch2/catch.hpp>

namespace sparta::shard_view_test {
namespace {

// 16 shards over 3 servers: primary s % 3; with `replicated`, replicas
// (s + 1) % 3 for every shard but shard 0, which has none.
pb::ClusterView ViewOf(bool replicated, uint64_t epoch = 7) {
  pb::ClusterView view;
  view.set_epoch(epoch);
  for (uint32_t s = 0; s < 16; ++s) {
    view.add_shard_owner(s % 3);
    auto* r = view.add_replicas();
    if (replicated && s != 0) r->add_ranks((s + 1) % 3);
  }
  return view;
}

std::vector<uint64_t> RandomKeys(size_t n) {
  std::mt19937_64 rng(3);
  std::vector<uint64_t> keys(n);
  for (auto& k : keys) k = rng();
  return keys;
}

TEST_CASE("keys go to their shard's primary once each, in request order", "[shard_view]") {
  const ShardView view(ViewOf(false));
  CHECK(view.epoch() == 7);
  CHECK(view.num_shards() == 16);
  CHECK_FALSE(view.any_replicas());
  const auto keys = RandomKeys(1000);
  const ShardView::Groups groups = view.ByOwner(keys);
  REQUIRE_FALSE(groups.whole());
  std::vector<int> seen(keys.size(), 0);
  for (uint32_t server = 0; server < groups.positions.size(); ++server) {
    uint32_t last = 0;
    for (size_t j = 0; j < groups.positions[server].size(); ++j) {
      const uint32_t i = groups.positions[server][j];
      if (j > 0) CHECK(i > last);
      last = i;
      CHECK(view.owner_of_key(keys[i]) == server);
      CHECK(view.owner(view.shard_of(keys[i])) == server);
      ++seen[i];
    }
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
}

TEST_CASE("a request for one server is not split", "[shard_view]") {
  const ShardView view(ViewOf(true));
  std::vector<uint64_t> keys;
  for (uint64_t k : RandomKeys(5000)) {
    if (view.owner_of_key(k) == 2) keys.push_back(k);
  }
  REQUIRE(keys.size() > 10);
  const ShardView::Groups groups = view.ByOwner(keys);
  REQUIRE(groups.whole());
  CHECK(groups.whole_to == std::vector<uint32_t>{2});
  CHECK(groups.positions.empty());
}

TEST_CASE("a push goes to every replica of its keys' shards", "[shard_view]") {
  const ShardView view(ViewOf(true));
  CHECK(view.any_replicas());
  CHECK(view.IsReplica(4, 2));
  CHECK_FALSE(view.IsReplica(4, 1));
  CHECK(view.Holds(4, 1));  // its primary
  CHECK_FALSE(view.Holds(0, 1));
  const auto keys = RandomKeys(1000);
  const ShardView::Groups groups = view.ByReplica(keys);
  REQUIRE_FALSE(groups.whole());
  size_t sent = 0;
  for (uint32_t server = 0; server < groups.positions.size(); ++server) {
    for (uint32_t i : groups.positions[server]) CHECK(view.IsReplica(view.shard_of(keys[i]), server));
    sent += groups.positions[server].size();
  }
  size_t expected = 0;
  for (uint64_t k : keys) expected += view.replicas(view.shard_of(k)).size();
  CHECK(sent == expected);

  // Keys whose shards all have the same replicas: forwarded whole.
  std::vector<uint64_t> same;
  for (uint64_t k : keys) {
    if (view.replicas(view.shard_of(k)) == std::vector<uint32_t>{1}) same.push_back(k);
  }
  REQUIRE(same.size() > 10);
  const ShardView::Groups whole = view.ByReplica(same);
  REQUIRE(whole.whole());
  CHECK(whole.whole_to == std::vector<uint32_t>{1});
}

TEST_CASE("rows gathered by position are those keys' rows", "[shard_view]") {
  const std::vector<float> rows = {0, 0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f};  // 4 keys x 2 floats
  const std::vector<uint32_t> positions = {3, 1};
  CHECK(ShardView::Gather<float>(rows.data(), positions, 2) == std::vector<float>{3, 3.5f, 1, 1.5f});
  const std::vector<uint64_t> keys = {10, 11, 12, 13};
  CHECK(ShardView::Gather<uint64_t>(keys.data(), positions, 1) == std::vector<uint64_t>{13, 11});
}

}  // namespace
}  // namespace sparta::shard_view_test
