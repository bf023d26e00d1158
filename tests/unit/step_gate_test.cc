// StepGate with real compute threads, as the worker drives it: a pause is
// reported once, when every thread has stopped at a step boundary, with the
// steps of all of them; Resume() lets them all go on; a worker whose threads
// have finished answers at once; Close() releases a thread that waits.
#include <future>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "worker/step_gate.h"

namespace sparta::step_gate_test {
namespace {

struct Report {
  uint64_t version, steps;
};

TEST_CASE("a pause is reported once, after every compute thread stopped, with all their steps") {
  std::mutex mu;
  std::vector<Report> reports;
  std::promise<void> reported;
  StepGate gate(
      [&](uint64_t version, uint64_t steps) {
        std::lock_guard<std::mutex> lock(mu);
        reports.push_back({version, steps});
        if (reports.size() == 1) reported.set_value();
      },
      /*threads=*/2, /*base_steps=*/100);
  // No pause asked: a boundary passes straight through.
  CHECK(gate.PauseHere(0, 1).ok());
  CHECK_FALSE(gate.pause_requested());

  gate.RequestPause(7);
  CHECK(gate.pause_requested());
  std::future<absl::Status> first = std::async(std::launch::async, [&] { return gate.PauseHere(0, 10); });
  std::future<absl::Status> second = std::async(std::launch::async, [&] { return gate.PauseHere(1, 5); });
  reported.get_future().wait();
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].version == 7);
    CHECK(reports[0].steps == 115);  // restored 100 + 10 + 5
  }
  // Both wait until the checkpoint is cut.
  CHECK(first.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);
  gate.Resume();
  CHECK(first.get().ok());
  CHECK(second.get().ok());
  CHECK_FALSE(gate.pause_requested());
  std::lock_guard<std::mutex> lock(mu);
  CHECK(reports.size() == 1);
}

TEST_CASE("a worker whose threads have all finished answers a pause at once, and again for the next one") {
  std::vector<Report> reports;
  StepGate gate([&](uint64_t version, uint64_t steps) { reports.push_back({version, steps}); }, 2);
  gate.Finished(0, 3);
  gate.Finished(1, 4);
  gate.RequestPause(1);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].version == 1);
  CHECK(reports[0].steps == 7);
  CHECK_FALSE(gate.pause_requested());  // nothing will call PauseHere
  gate.RequestPause(2);
  REQUIRE(reports.size() == 2);
  CHECK(reports[1].version == 2);
}

TEST_CASE("a finished thread does not hold up a pause of the others") {
  std::promise<Report> reported;
  StepGate gate([&](uint64_t version, uint64_t steps) { reported.set_value({version, steps}); }, 2);
  gate.Finished(1, 8);
  gate.RequestPause(3);
  std::future<absl::Status> paused = std::async(std::launch::async, [&] { return gate.PauseHere(0, 2); });
  const Report r = reported.get_future().get();
  CHECK(r.version == 3);
  CHECK(r.steps == 10);
  gate.Resume();
  CHECK(paused.get().ok());
}

TEST_CASE("a pause asked right after a resume waits for the released threads to stop again") {
  // The scheduler sends RESUME and the next checkpoint's PAUSE back to back,
  // so the second may come before a released thread has woken. Here both come
  // from the report itself, before the paused thread even waits: a thread
  // released by Resume() counts as running, so the next pause is reported
  // only when it stops again, with the steps it trained meanwhile.
  std::mutex mu;
  std::vector<Report> reports;
  std::promise<void> second_report;
  StepGate* gate_ptr = nullptr;
  StepGate gate(
      [&](uint64_t version, uint64_t steps) {
        size_t count;
        {
          std::lock_guard<std::mutex> lock(mu);
          reports.push_back({version, steps});
          count = reports.size();
        }
        if (count == 1) {
          gate_ptr->Resume();
          gate_ptr->RequestPause(2);
        } else if (count == 2) {
          second_report.set_value();
        }
      },
      1);
  gate_ptr = &gate;
  gate.RequestPause(1);
  CHECK(gate.PauseHere(0, 5).ok());  // returns: resumed inside the report
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(reports.size() == 1);  // version 2 not reported with the old 5 steps
    CHECK(reports[0].version == 1);
  }
  CHECK(gate.pause_requested());
  std::future<absl::Status> paused = std::async(std::launch::async, [&] { return gate.PauseHere(0, 6); });
  second_report.get_future().wait();
  gate.Resume();
  CHECK(paused.get().ok());
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(reports.size() == 2);
  CHECK(reports[1].version == 2);
  CHECK(reports[1].steps == 6);
}

TEST_CASE("closing the gate releases a thread waiting in a pause with an error") {
  std::promise<void> reported;
  StepGate gate([&](uint64_t, uint64_t) { reported.set_value(); }, 1);
  gate.RequestPause(4);
  std::future<absl::Status> paused = std::async(std::launch::async, [&] { return gate.PauseHere(0, 1); });
  reported.get_future().wait();
  gate.Close();
  const absl::Status st = paused.get();
  CHECK(absl::IsCancelled(st));
}

}  // namespace
}  // namespace sparta::step_gate_test
