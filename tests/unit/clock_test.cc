// Staleness bookkeeping: the worker's ClockGate and the scheduler's
// ClockTable, on a resumed job and while the scheduler is silent.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>
#include <mutex>
#include <vector>

#include "scheduler/clock_table.h"
#include "worker/clock_gate.h"

namespace sparta::clock_test {
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

TEST_CASE("under ssp a step waits for the slowest worker, and goes on when its clock arrives") {
  std::mutex mu;
  std::vector<uint64_t> sent;
  ClockGate gate(/*staleness=*/2, /*threads=*/1, 0, 0, /*resend_seconds=*/60, [&](uint64_t c) {
    std::lock_guard<std::mutex> lock(mu);
    sent.push_back(c);
  });
  // Steps 1..3 are within 2 of a slowest worker at 0.
  for (uint64_t step = 1; step <= 3; ++step) {
    REQUIRE(gate.WaitForStep(step).ok());
    gate.Advance(0, step);
  }
  // Step 4 needs the slowest at 1 or more: it waits until the scheduler says so.
  std::future<absl::StatusOr<ClockGate::Wait>> fourth = std::async(std::launch::async, [&] { return gate.WaitForStep(4); });
  CHECK(fourth.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  gate.OnMinClock(1);
  const auto waited = fourth.get();
  REQUIRE(waited.ok());
  CHECK(*waited == ClockGate::Wait::kReady);
  CHECK(gate.max_staleness() == 2);
  std::lock_guard<std::mutex> lock(mu);
  // The starting clock once, then each rise.
  CHECK(sent == std::vector<uint64_t>{0, 1, 2, 3});
}

TEST_CASE("with several compute threads the worker's clock is the least of theirs") {
  std::vector<uint64_t> sent;
  ClockGate gate(-1, /*threads=*/3, 0, 0, 60, [&](uint64_t c) { sent.push_back(c); });
  gate.Advance(0, 5);
  gate.Advance(1, 2);
  CHECK(sent.empty());  // thread 2 is still at 0
  gate.Advance(2, 4);
  gate.Advance(1, 1);  // never goes back
  gate.Advance(1, 6);
  gate.Advance(2, ClockGate::kFinished);
  CHECK(sent == std::vector<uint64_t>{2, 4, 5});  // each rise of the least: {5,2,4}, {5,6,4}, {5,6,done}
}

TEST_CASE("a waiting step is interrupted by Wake and ended by Close") {
  ClockGate gate(/*staleness=*/0, 1, /*start_clock=*/10, /*slowest_start=*/0, 60, [](uint64_t) {});
  auto waiting = std::async(std::launch::async, [&] { return gate.WaitForStep(11); });
  // A checkpoint pause wants this boundary. A wake before the step starts
  // waiting is not for it, so wake until the waiting step has seen one.
  while (waiting.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    gate.Wake();
    std::this_thread::yield();
  }
  const auto woken = waiting.get();
  REQUIRE(woken.ok());
  CHECK(*woken == ClockGate::Wait::kInterrupted);
  waiting = std::async(std::launch::async, [&] { return gate.WaitForStep(11); });
  gate.Close();
  const auto closed = waiting.get();
  CHECK(absl::IsCancelled(closed.status()));
}

TEST_CASE("the scheduler's clock table starts from the restored clocks") {
  ClockTable table(2);
  table.Start({300, 296});
  CHECK(table.min() == 296);
  CHECK_FALSE(table.Update(0, 301).has_value());  // the minimum has not risen
  CHECK(table.max_spread() == 5);
  CHECK(table.Update(1, 299) == 299u);
}

TEST_CASE("a worker that waited for work rejoins at the others' clock and counts its steps on from there") {
  std::vector<uint64_t> sent;
  ClockGate gate(/*staleness=*/1, /*threads=*/2, 0, 0, 60, [&](uint64_t c) { sent.push_back(c); });
  // It trains 3 steps on both threads, then waits, idle, for a unit while
  // the others (counted without it) reach 40.
  for (uint64_t step = 1; step <= 3; ++step) {
    gate.OnMinClock(step - 1);
    REQUIRE(gate.WaitForStep(step).ok());
    gate.Advance(0, step);
    gate.Advance(1, step);
  }
  CHECK(gate.max_staleness() == 0);
  gate.Rebase(40);
  // Its trainer's step 4 is step 41 of the job: within 1 of the slowest at 40.
  REQUIRE(gate.WaitForStep(4).ok());
  CHECK(gate.max_staleness() == 0);
  gate.Advance(0, 4);
  gate.Advance(1, 4);
  CHECK(sent.back() == 41);
  // Step 6 (the job's 43) needs the slowest at 41 or more.
  auto sixth = std::async(std::launch::async, [&] { return gate.WaitForStep(6); });
  CHECK(sixth.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  gate.OnMinClock(41);
  REQUIRE(sixth.get().ok());
  // A rebase to a clock it is past already changes nothing.
  gate.Rebase(30);
  gate.Advance(0, 5);
  gate.Advance(1, 5);
  CHECK(sent.back() == 42);
}

TEST_CASE("the clock table counts an idle worker out, and back in where the others are") {
  ClockTable table(3);
  table.Update(0, 5);
  table.Update(1, 9);
  table.Update(2, 7);
  CHECK(table.min() == 5);
  // Worker 0 waits for work: counted out, the minimum rises to 7.
  CHECK(table.Remove(0) == 7u);
  table.Update(2, 12);
  CHECK(table.min() == 9);
  // It gets a unit: it rejoins at the slowest live clock (not its own 5),
  // so the minimum does not fall back.
  CHECK(table.Rejoin(0, 5) == 9);
  CHECK(table.min() == 9);
  CHECK(table.clock(0) == 9);
  // One that was ahead keeps its own clock.
  table.Remove(1);
  CHECK(table.Rejoin(1, 30) == 30);
  CHECK(table.clock(7) == ClockTable::kFinished);  // no such rank
}

}  // namespace
}  // namespace sparta::clock_test
