// OrderByShard: every index once, shard by shard, each shard's in the given
// order (a key that comes twice keeps its order), and the ends it reports
// are where each shard's indices end; the scratch the server keeps between
// requests does not carry one request's counts into the next.
#include "common/shard_order.h"

#include <algorithm>
#include <random>

#include <catch2/catch.hpp>

namespace sparta::shard_order_test {
namespace {

// Each shard's indices of `shard_of`, in index order: what the order must
// list, shard after shard.
std::vector<std::vector<uint32_t>> ByShard(const std::vector<uint32_t>& shard_of, uint32_t num_shards) {
  std::vector<std::vector<uint32_t>> by_shard(num_shards);
  for (uint32_t i = 0; i < shard_of.size(); ++i) by_shard[shard_of[i]].push_back(i);
  return by_shard;
}

void CheckOrder(const std::vector<uint32_t>& shard_of, uint32_t num_shards, const std::vector<uint32_t>& ends,
                const std::vector<uint32_t>& order) {
  REQUIRE(order.size() == shard_of.size());
  REQUIRE(ends.size() == num_shards);
  const auto by_shard = ByShard(shard_of, num_shards);
  uint32_t at = 0;
  for (uint32_t s = 0; s < num_shards; ++s) {
    const std::vector<uint32_t> listed(order.begin() + at, order.begin() + ends[s]);
    CHECK(listed == by_shard[s]);
    at = ends[s];
  }
  CHECK(at == order.size());
}

TEST_CASE("keys are ordered shard by shard, each shard's in the given order", "[shard_order]") {
  std::mt19937 rng(3);
  const uint32_t num_shards = 37;
  std::vector<uint32_t> shard_of(5000);
  for (auto& s : shard_of) s = rng() % num_shards;
  std::vector<uint32_t> ends, order;
  OrderByShard(shard_of, num_shards, &ends, &order);
  CheckOrder(shard_of, num_shards, ends, order);
}

TEST_CASE("shards without keys and a request in one shard are ordered too", "[shard_order]") {
  std::vector<uint32_t> ends, order;
  // Only shards 2 and 5 of 8 have keys; the rest end where the one before does.
  const std::vector<uint32_t> sparse = {5, 2, 5, 5, 2};
  OrderByShard(sparse, 8, &ends, &order);
  CHECK(order == std::vector<uint32_t>{1, 4, 0, 2, 3});
  CHECK(ends == std::vector<uint32_t>{0, 0, 2, 2, 2, 5, 5, 5});
  // The same scratch again, for a request all in one shard: nothing left over.
  const std::vector<uint32_t> one(100, 3);
  OrderByShard(one, 4, &ends, &order);
  CheckOrder(one, 4, ends, order);
  std::vector<uint32_t> identity(100);
  for (uint32_t i = 0; i < identity.size(); ++i) identity[i] = i;
  CHECK(order == identity);
  // And for no keys at all.
  OrderByShard({}, 4, &ends, &order);
  CHECK(order.empty());
  CHECK(ends == std::vector<uint32_t>{0, 0, 0, 0});
}

}  // namespace
}  // namespace sparta::shard_order_test
