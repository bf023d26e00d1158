// Staleness bookkeeping: the worker's ClockGate and the scheduler's
// ClockTable, on a resumed job and while the scheduler is silent.
#include <catch2/catch.hpp>

#include <atomic>

#include "scheduler/clock_table.h"
#include "worker/clock_gate.h"

namespace sparta {
namespace {

TEST_CASE("a resumed worker measures staleness against the slowest worker's restored clock") {
  // Resumed at step 500; the slowest worker was saved at step 498.
  ClockGate gate(/*staleness=*/-1, /*threads=*/1, /*start_clock=*/500, /*slowest_start=*/498, 0.1,
                 [](uint64_t) {});
  REQUIRE(gate.WaitForStep(501).ok());
  CHECK(gate.max_staleness() == 2);  // not 500: nobody is at step 0
}

TEST_CASE("steps taken while the scheduler is silent are not counted as staleness") {
  std::atomic<bool> informed{true};
  ClockGate gate(-1, 1, 0, 0, 0.1, [](uint64_t) {}, [&] { return informed.load(); });
  gate.OnMinClock(9);
  REQUIRE(gate.WaitForStep(11).ok());  // 10 steps done, the slowest 9: 1 ahead
  informed = false;                     // e.g. the scheduler stopped in a debugger
  for (uint64_t step = 12; step < 400; ++step) REQUIRE(gate.WaitForStep(step).ok());
  informed = true;
  gate.OnMinClock(398);
  REQUIRE(gate.WaitForStep(400).ok());
  CHECK(gate.max_staleness() == 1);
  CHECK(gate.mean_staleness() == Approx(1.0));
}

TEST_CASE("the scheduler's clock table starts from the restored clocks") {
  ClockTable table(2);
  table.Start({300, 296});
  CHECK(table.min() == 296);
  CHECK_FALSE(table.Update(0, 301).has_value());  // the minimum has not risen
  CHECK(table.max_spread() == 5);
  CHECK(table.Update(1, 299) == 299u);
}

}  // namespace
}  // namespace sparta
