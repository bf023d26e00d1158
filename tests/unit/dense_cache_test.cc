// DenseCache as the worker's compute threads use it: a snapshot handed out
// for a mark was pulled after every push counted in that mark; a thread that
// asks again without pushing shares the pull it already has; threads that
// step together share one pull per round; only dense tables are cached, as
// whole blocks.
//
// The pulls are posted through the cache's Puller, which here writes into
// the snapshot how many pushes had been posted when the pull was: the one
// thing the cache promises about a snapshot's freshness.
#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "worker/dense_cache.h"

namespace sparta::dense_cache_test {
namespace {

pb::TableSpec Table(uint32_t id, pb::TableSpec::Kind kind, uint32_t dim, uint64_t dense_size = 0) {
  pb::TableSpec t;
  t.set_id(id);
  t.set_kind(kind);
  t.set_dim(dim);
  t.set_dense_size(dense_size);
  return t;
}

// What the cache asked to pull, and how many pushes were posted by then.
struct Pulls {
  std::atomic<uint64_t> pushes_posted{0};
  std::atomic<uint64_t> count{0};
  std::mutex mu;
  std::vector<uint32_t> tables;
  std::vector<size_t> key_counts;
  std::vector<uint64_t> clocks;

  DenseCache::Puller Puller() {
    return [this](const pb::TableSpec& table, std::span<const uint64_t> keys, float* out, uint64_t clock) {
      {
        std::lock_guard<std::mutex> lock(mu);
        tables.push_back(table.id());
        key_counts.push_back(keys.size());
        clocks.push_back(clock);
        // The block numbers are 0 .. blocks-1, in order.
        for (size_t i = 0; i < keys.size(); ++i) REQUIRE(keys[i] == i);
      }
      out[0] = static_cast<float>(pushes_posted.load());
      ++count;
      return KVClient::Ticket();
    };
  }

  // A push, posted as a compute thread posts it: to the client first, then
  // counted in the cache.
  uint64_t Push(DenseCache& cache) {
    ++pushes_posted;
    return cache.NotePushes();
  }
};

TEST_CASE("a dense table is pulled as whole blocks, sparse tables are not the cache's") {
  Pulls pulls;
  // Table 2: 10 floats in blocks of 4 -> 3 blocks, 12 floats.
  DenseCache cache(pulls.Puller(), {Table(1, pb::TableSpec::SPARSE, 8), Table(2, pb::TableSpec::DENSE, 4, 10),
                                    Table(3, pb::TableSpec::DENSE, 16, 16)});
  auto second = cache.Get(1, 0, /*clock=*/7);
  CHECK(second->values.size() == 12);
  auto third = cache.Get(2, 0, 0);
  CHECK(third->values.size() == 16);
  REQUIRE(pulls.count == 2);
  CHECK(pulls.tables == std::vector<uint32_t>{2, 3});
  CHECK(pulls.key_counts == std::vector<size_t>{3, 1});
  CHECK(pulls.clocks == std::vector<uint64_t>{7, 0});
  CHECK(DenseBlockKeys(Table(4, pb::TableSpec::DENSE, 4, 8)).size() == 2);
}

TEST_CASE("one thread pulls again only after it pushed, and then sees its push") {
  Pulls pulls;
  DenseCache cache(pulls.Puller(), {Table(1, pb::TableSpec::DENSE, 4, 4)});
  auto first = cache.Get(0, 0, 0);
  // Nothing pushed since: the same snapshot.
  CHECK(cache.Get(0, 0, 0) == first);
  CHECK(cache.Get(0, cache.mark(), 0) == first);
  CHECK(pulls.count == 1);
  for (int step = 1; step <= 5; ++step) {
    const uint64_t mark = pulls.Push(cache);
    auto snapshot = cache.Get(0, mark, 0);
    CHECK(snapshot != first);
    CHECK(snapshot->values[0] >= static_cast<float>(step));
    first = snapshot;
  }
  CHECK(pulls.count == 6);
  CHECK(cache.pulled() == 6);
  CHECK(cache.shared() == 2);
}

TEST_CASE("threads stepping together share pulls, and each sees its own pushes") {
  constexpr int kThreads = 4;
  constexpr int kSteps = 300;
  Pulls pulls;
  DenseCache cache(pulls.Puller(), {Table(1, pb::TableSpec::DENSE, 8, 64)});
  std::atomic<int> stale{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int step = 0; step < kSteps; ++step) {
        const uint64_t mark = pulls.Push(cache);
        auto snapshot = cache.Get(0, mark, 0);
        if (snapshot->values[0] < static_cast<float>(mark)) ++stale;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(stale == 0);
  CHECK(cache.pulled() == pulls.count);
  CHECK(cache.pulled() + cache.shared() == static_cast<uint64_t>(kThreads * kSteps));
  // Never more pulls than pushes: a pull is only issued for a mark no
  // snapshot has reached.
  CHECK(pulls.count <= pulls.pushes_posted);
}

TEST_CASE("under bsp, threads past the step's barrier share one pull per step") {
  constexpr int kThreads = 3;
  constexpr int kSteps = 50;
  Pulls pulls;
  DenseCache cache(pulls.Puller(), {Table(1, pb::TableSpec::DENSE, 4, 4)});
  std::barrier barrier(kThreads);
  std::atomic<int> stale{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int step = 1; step <= kSteps; ++step) {
        pulls.Push(cache);
        barrier.arrive_and_wait();  // every thread's push of the step is posted
        const uint64_t mark = cache.mark();
        auto snapshot = cache.Get(0, mark, step);
        if (snapshot->values[0] < static_cast<float>(kThreads * step)) ++stale;
        barrier.arrive_and_wait();  // the step's pulls are done before the next pushes
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(stale == 0);
  CHECK(pulls.count == kSteps);
  CHECK(cache.shared() == static_cast<uint64_t>((kThreads - 1) * kSteps));
  for (size_t i = 0; i < pulls.clocks.size(); ++i) CHECK(pulls.clocks[i] == i + 1);
}

}  // namespace
}  // namespace sparta::dense_cache_test
