// TaskQueue: no item is lost or reordered per producer under contention, and
// Close() ends a waiting consumer only after the queue is drained.
#include "common/task_queue.h"

#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace sparta::task_queue_test {
namespace {

TEST_CASE("TaskQueue keeps each producer's order and loses nothing", "[task_queue]") {
  constexpr int kProducers = 3, kItems = 200000;
  TaskQueue<std::pair<int, int>> queue;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kItems; ++i) queue.Push({p, i});
    });
  }
  std::vector<int> next(kProducers, 0);
  int received = 0;
  bool in_order = true;
  while (received < kProducers * kItems) {
    auto item = queue.WaitPop();
    REQUIRE(item.has_value());
    in_order = in_order && item->second == next[item->first];
    next[item->first] = item->second + 1;
    ++received;
  }
  for (auto& t : producers) t.join();
  CHECK(in_order);
  CHECK(!queue.Pop().has_value());
}

TEST_CASE("TaskQueue::Close drains what was queued, then wakes the consumer with nothing", "[task_queue]") {
  TaskQueue<int> queue;
  std::vector<int> seen;
  std::thread consumer([&] {
    while (auto item = queue.WaitPop()) seen.push_back(*item);
  });
  for (int i = 0; i < 1000; ++i) queue.Push(i);
  queue.Close();
  consumer.join();
  REQUIRE(seen.size() == 1000);
  for (int i = 0; i < 1000; ++i) CHECK(seen[i] == i);
}

TEST_CASE("TaskQueue::Close wakes a consumer that is already asleep", "[task_queue]") {
  TaskQueue<int> queue;
  std::thread consumer([&] { CHECK(!queue.WaitPop().has_value()); });
  std::this_thread::yield();
  queue.Close();
  consumer.join();
}

}  // namespace
}  // namespace sparta::task_queue_test
