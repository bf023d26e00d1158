// ColdTierThread: jobs run one at a time in submission order (a lookup
// queued behind an eviction's write runs after it), and a job submitted
// once Stop() has begun is refused, so that its caller does the work
// itself rather than lose it, but not before the jobs queued ahead of it
// are done. Real threads.
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "server/cold_tier_thread.h"

namespace sparta::cold_tier_thread_test {
namespace {

TEST_CASE("the cold-tier thread runs its jobs one at a time in submission order", "[tiering]") {
  std::vector<int> ran;
  std::atomic<int> running{0};
  int overlapped = 0;
  {
    ColdTierThread thread("cold-tier-test");
    for (int i = 0; i < 1000; ++i) {
      REQUIRE(thread.Submit([&, i] {
        if (running.fetch_add(1) != 0) ++overlapped;
        ran.push_back(i);  // only this thread writes it
        running.fetch_sub(1);
      }));
    }
  }  // the destructor runs what was submitted, then joins
  REQUIRE(ran.size() == 1000);
  for (int i = 0; i < 1000; ++i) CHECK(ran[i] == i);
  CHECK(overlapped == 0);
}

TEST_CASE("a job submitted after the cold-tier thread stopped is refused, not dropped", "[tiering]") {
  ColdTierThread thread("cold-tier-test");
  std::atomic<int> ran{0};
  REQUIRE(thread.Submit([&] { ran.fetch_add(1); }));
  thread.Stop();
  CHECK(ran.load() == 1);  // what was submitted before ran
  CHECK_FALSE(thread.Submit([&] { ran.fetch_add(1); }));
  thread.Stop();  // again: harmless
  CHECK(ran.load() == 1);
}

TEST_CASE("a refused job's caller goes on only once the jobs queued before have run", "[tiering]") {
  // The executor does a refused job itself, and the cold tier's logs it
  // touches are not thread-safe: the job still running on the thread must
  // be over first.
  ColdTierThread thread("cold-tier-test");
  std::promise<void> release;
  std::atomic<bool> first_done{false};
  REQUIRE(thread.Submit([&] {
    release.get_future().wait();
    first_done.store(true);
  }));
  std::thread stopper([&] { thread.Stop(); });
  std::promise<bool> refused;  // set with whether the first job was over then
  std::thread submitter([&] {
    while (thread.Submit([] {})) {
    }
    refused.set_value(first_done.load());
  });
  auto answer = refused.get_future();
  // While the first job runs, no refusal comes back (without the wait in
  // Submit(), one comes as soon as Stop() has begun).
  CHECK(answer.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
  release.set_value();
  CHECK(answer.get());
  submitter.join();
  stopper.join();
}

}  // namespace
}  // namespace sparta::cold_tier_thread_test
