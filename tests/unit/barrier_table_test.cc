// The scheduler's named barriers without the coordinator around them: when
// a barrier is released, who is not awaited, and who passes at once after
// a release (a newcomer, a node whose release was lost), also once the
// releases went through a saved state.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "scheduler/barrier_table.h"

namespace sparta::barrier_table_test {
namespace {

using Arrival = BarrierTable::Arrival;

const auto kAllLive = [](uint32_t) { return true; };

// Arrives without a resend; the release it passes with, if any, is dropped.
Arrival Arrive(BarrierTable& table, uint32_t id, const std::string& name = "tables") {
  pb::Header ignored;
  return table.Arrive(pb::WORKER, name, id, /*resent=*/false, /*round=*/0, &ignored);
}

TEST_CASE("a barrier is released once as many live nodes as it waits for arrived, one round at a time",
          "[barrier_table]") {
  BarrierTable table;
  CHECK(Arrive(table, 7) == Arrival::kWaits);
  CHECK_FALSE(table.ReleaseIfComplete(pb::WORKER, "tables", 2, 0, kAllLive));
  CHECK(Arrive(table, 9) == Arrival::kWaits);
  auto release = table.ReleaseIfComplete(pb::WORKER, "tables", 2, 3, kAllLive);
  REQUIRE(release);
  CHECK(release->type() == pb::BARRIER_RELEASE);
  CHECK(release->barrier() == "tables");
  CHECK(release->lead_rank() == 3);
  CHECK(release->seq() == 1);
  CHECK(table.Open(pb::WORKER).empty());
  // Released once: asking again sends nothing.
  CHECK_FALSE(table.ReleaseIfComplete(pb::WORKER, "tables", 2, 3, kAllLive));

  // Both come again (the next epoch's barrier of the same name): round 2.
  CHECK(Arrive(table, 7) == Arrival::kWaits);
  CHECK(Arrive(table, 9) == Arrival::kWaits);
  release = table.ReleaseIfComplete(pb::WORKER, "tables", 2, 3, kAllLive);
  REQUIRE(release);
  CHECK(release->seq() == 2);
}

TEST_CASE("a node lost while the others waited is not awaited, and other roles and names are apart",
          "[barrier_table]") {
  BarrierTable table;
  CHECK(Arrive(table, 1) == Arrival::kWaits);
  CHECK(Arrive(table, 2) == Arrival::kWaits);
  CHECK(Arrive(table, 3, "eval") == Arrival::kWaits);
  pb::Header ignored;
  CHECK(table.Arrive(pb::SERVER, "tables", 1, false, 0, &ignored) == Arrival::kWaits);
  CHECK(table.Open(pb::WORKER) == std::vector<std::string>{"eval", "tables"});
  CHECK(table.Open(pb::SERVER) == std::vector<std::string>{"tables"});

  std::set<uint32_t> dead = {2};
  auto live = [&](uint32_t id) { return dead.count(id) == 0; };
  // Three workers are expected, two arrived and one of them died: 1 of 3.
  CHECK_FALSE(table.ReleaseIfComplete(pb::WORKER, "tables", 3, 0, live));
  // The job now waits for the two live ones (BarrierSize shrank): still 1.
  CHECK_FALSE(table.ReleaseIfComplete(pb::WORKER, "tables", 2, 0, live));
  CHECK(table.ReleaseIfComplete(pb::WORKER, "tables", 1, 0, live));

  // A server barrier's release names no lead rank.
  auto servers = table.ReleaseIfComplete(pb::SERVER, "tables", 1, 5, kAllLive);
  REQUIRE(servers);
  CHECK(servers->lead_rank() == 0);  // 5 was offered: only workers name one
  CHECK(servers->seq() == 1);
  CHECK(table.Open(pb::WORKER) == std::vector<std::string>{"eval"});
}

TEST_CASE("after a release, a newcomer and a node whose release was lost pass at once, also after a save",
          "[barrier_table]") {
  BarrierTable first;
  CHECK(Arrive(first, 1) == Arrival::kWaits);
  CHECK(Arrive(first, 2) == Arrival::kWaits);
  REQUIRE(first.ReleaseIfComplete(pb::WORKER, "tables", 2, 0, kAllLive));
  pb::SchedulerState state;
  first.Save(&state);
  BarrierTable taken_over;  // a scheduler that took over from the saved state
  taken_over.Load(state);

  for (BarrierTable* table : {&first, &taken_over}) {
    INFO((table == &first ? "the table that released" : "the table loaded from its saved state"));
    pb::Header release;
    // Node 1 passed round 1, but the scheduler died before its release
    // arrived: its resend names the round it waits for (0 -> it has not
    // seen round 1).
    CHECK(table->Arrive(pb::WORKER, "tables", 1, /*resent=*/true, /*round=*/0, &release) == Arrival::kReleaseLost);
    CHECK(release.type() == pb::BARRIER_RELEASE);
    CHECK(release.seq() == 1);
    CHECK(release.lead_rank() == 0);
    // Node 3 started after the others passed (a lost worker's rank started
    // again): no round is open, so it passes with round 1's release.
    release.Clear();
    CHECK(table->Arrive(pb::WORKER, "tables", 3, false, 0, &release) == Arrival::kLate);
    CHECK(release.seq() == 1);
    // Node 2 comes again having seen round 1: the next round opens, and
    // waits; a newcomer now waits with it rather than pass alone.
    CHECK(table->Arrive(pb::WORKER, "tables", 2, true, 1, &release) == Arrival::kWaits);
    CHECK(table->Arrive(pb::WORKER, "tables", 4, false, 0, &release) == Arrival::kWaits);
    auto next = table->ReleaseIfComplete(pb::WORKER, "tables", 2, 0, kAllLive);
    REQUIRE(next);
    CHECK(next->seq() == 2);
  }

  // A node that passed and arrives again without a resend waits for the next round.
  BarrierTable table;
  table.Load(state);
  pb::Header release;
  CHECK(table.Arrive(pb::WORKER, "tables", 1, false, 0, &release) == Arrival::kWaits);
}

}  // namespace
}  // namespace sparta::barrier_table_test
