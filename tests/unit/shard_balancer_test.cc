// PlanRowBalance: a server that joins gets copies until rows (not shard
// counts) are even, primaries first; moves under way count as done; shards
// with no rows yet spread by count.
#include "scheduler/shard_balancer.h"

#include <algorithm>
#include <map>
#include <numeric>

#include <catch2/catch.hpp>

namespace sparta::shard_balancer_test {
namespace {

// Rows each server leads and holds once `plan` is carried out.
struct Loads {
  std::map<uint32_t, uint64_t> lead, held;
};
Loads After(const ShardMap& map, const std::vector<PlannedMove>& plan, const std::vector<uint64_t>& rows) {
  std::vector<uint32_t> owner = map.owners();
  std::vector<std::vector<uint32_t>> replicas;
  for (uint32_t s = 0; s < owner.size(); ++s) replicas.push_back(map.replicas(s));
  for (const PlannedMove& m : plan) {
    if (owner[m.shard] == m.from) {
      owner[m.shard] = m.to;
    } else {
      std::replace(replicas[m.shard].begin(), replicas[m.shard].end(), m.from, m.to);
    }
  }
  Loads out;
  for (uint32_t s = 0; s < owner.size(); ++s) {
    out.lead[owner[s]] += rows[s];
    out.held[owner[s]] += rows[s];
    for (uint32_t r : replicas[s]) out.held[r] += rows[s];
  }
  return out;
}

TEST_CASE("a joined server gets primaries until it leads about a third of the rows", "[shard_balancer]") {
  ShardMap map(32, 2, 1);  // shards on servers 0 and 1; server 2 joins with none
  std::vector<uint64_t> rows(32, 1000);
  const auto plan = PlanRowBalance(map, rows, {0, 1, 2});
  REQUIRE_FALSE(plan.empty());
  for (const PlannedMove& m : plan) {
    CHECK(m.to == 2);
    CHECK(map.owners()[m.shard] == m.from);
  }
  // No shard moves twice.
  std::vector<uint32_t> shards;
  for (const PlannedMove& m : plan) shards.push_back(m.shard);
  std::sort(shards.begin(), shards.end());
  CHECK(std::adjacent_find(shards.begin(), shards.end()) == shards.end());
  const Loads loads = After(map, plan, rows);
  // 32 equal shards on 3 servers: 10 or 11 each, whichever way.
  for (uint32_t r : {0u, 1u, 2u}) {
    CHECK(loads.lead.at(r) >= 10 * 1000);
    CHECK(loads.lead.at(r) <= 11 * 1000);
  }
}

TEST_CASE("balance is by rows: a server of big shards gives fewer of them", "[shard_balancer]") {
  ShardMap map(16, 2, 1);  // even shards on 0, odd on 1
  std::vector<uint64_t> rows(16);
  for (uint32_t s = 0; s < 16; ++s) rows[s] = s % 2 == 0 ? 3000 : 1000;  // server 0 holds 3x the rows
  const auto plan = PlanRowBalance(map, rows, {0, 1, 2});
  const Loads loads = After(map, plan, rows);
  const uint64_t total = std::accumulate(rows.begin(), rows.end(), uint64_t{0});
  // Even to within one big shard of a third each.
  for (uint32_t r : {0u, 1u, 2u}) {
    CHECK(loads.lead.at(r) + 3000 >= total / 3);
    CHECK(loads.lead.at(r) <= total / 3 + 3000);
  }
  // Most of what moves comes from the server with the most rows.
  int from0 = 0;
  for (const PlannedMove& m : plan) from0 += m.from == 0;
  CHECK(from0 * 2 > static_cast<int>(plan.size()));
}

TEST_CASE("with replicas, a joined server leads and follows its share", "[shard_balancer]") {
  ShardMap map(24, 3, 2);  // primary s % 3, replica (s + 1) % 3
  std::vector<uint64_t> rows(24, 500);
  const auto plan = PlanRowBalance(map, rows, {0, 1, 2, 3});
  const Loads loads = After(map, plan, rows);
  // 24 primaries and 24 replica copies over 4 servers: 6 + 6 each.
  for (uint32_t r : {0u, 1u, 2u, 3u}) {
    CHECK(loads.lead.at(r) == 6 * 500);
    CHECK(loads.held.at(r) == 12 * 500);
  }
  // A server never holds two copies of one shard.
  for (const PlannedMove& m : plan) CHECK(std::count(map.replicas(m.shard).begin(), map.replicas(m.shard).end(), m.to) == 0);
}

TEST_CASE("shards with no rows yet spread by count", "[shard_balancer]") {
  ShardMap map(12, 2, 1);
  const auto plan = PlanRowBalance(map, std::vector<uint64_t>(12, 0), {0, 1, 2});
  CHECK(plan.size() == 4);  // 6 + 6 -> 4 + 4 + 4
}

TEST_CASE("moves under way count as done, and a balanced map plans nothing", "[shard_balancer]") {
  ShardMap map(12, 2, 1);
  std::vector<uint64_t> rows(12, 100);
  const auto first = PlanRowBalance(map, rows, {0, 1, 2});
  for (const PlannedMove& m : first) REQUIRE(map.BeginMove(m.shard, m.from, m.to, /*epoch=*/2));
  CHECK(PlanRowBalance(map, rows, {0, 1, 2}).empty());
  // A fourth server joins while those still move: it gets copies from
  // where things will be, never a shard that is moving already (server 2's
  // are all on their way, so it gives none yet).
  const auto second = PlanRowBalance(map, rows, {0, 1, 2, 3});
  CHECK(second.size() == 2);
  for (const PlannedMove& m : second) {
    CHECK(m.to == 3);
    CHECK(m.from != 2);
    CHECK(map.moves().count(m.shard) == 0);
  }
}

TEST_CASE("one server, or none to move to, plans nothing", "[shard_balancer]") {
  ShardMap map(8, 1, 1);
  CHECK(PlanRowBalance(map, std::vector<uint64_t>(8, 10), {0}).empty());
}

}  // namespace
}  // namespace sparta::shard_balancer_test
