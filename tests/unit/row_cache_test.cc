// RowCache: a serving front-end's bounded cache of rows (serving.shards > 0).
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "worker/serving/row_cache.h"

namespace sparta::row_cache_test {
namespace {

std::vector<float> RowFor(uint64_t key) { return {static_cast<float>(key), -static_cast<float>(key), 0.5f, 1.0f}; }

TEST_CASE("a cached row reads back as it was put, an absent one is a miss", "[row_cache]") {
  RowCache cache(4, 1 << 20);
  std::vector<float> out(4);
  CHECK_FALSE(cache.Lookup(7, out.data()));
  cache.Insert(7, RowFor(7).data());
  REQUIRE(cache.Lookup(7, out.data()));
  CHECK(out == RowFor(7));
  CHECK(cache.hits() == 1);
  CHECK(cache.misses() == 1);
  CHECK(cache.rows() == 1);
}

TEST_CASE("the cache holds no more rows than its bytes allow, and keeps the rows read again", "[row_cache]") {
  RowCache cache(4, 64 << 10);
  const uint64_t capacity = cache.capacity();
  REQUIRE(capacity > 100);
  REQUIRE(capacity < (64 << 10) / 16);  // at least the row's floats per row
  std::vector<float> out(4);
  // A hot set, read again and again, while a stream of keys seen once
  // passes through: the hot rows stay.
  const uint64_t hot = capacity / 8;
  for (uint64_t k = 0; k < hot; ++k) cache.Insert(k, RowFor(k).data());
  for (uint64_t cold = 1000000; cold < 1000000 + 20 * capacity; ++cold) {
    if (cold % 4 == 0) {
      for (uint64_t k = 0; k < hot; ++k) (void)cache.Lookup(k, out.data());
    }
    cache.Insert(cold, RowFor(cold).data());
  }
  CHECK(cache.rows() <= capacity);
  uint64_t kept = 0;
  for (uint64_t k = 0; k < hot; ++k) {
    if (cache.Lookup(k, out.data())) {
      ++kept;
      CHECK(out == RowFor(k));
    }
  }
  CHECK(kept > hot * 9 / 10);
  // Without reads, the first keys of a long stream are gone.
  RowCache stream(4, 64 << 10);
  for (uint64_t k = 0; k < 20 * capacity; ++k) stream.Insert(k, RowFor(k).data());
  CHECK_FALSE(stream.Lookup(0, out.data()));
  CHECK(stream.rows() <= capacity);
}

TEST_CASE("a cache of no bytes caches nothing, and threads share one safely", "[row_cache]") {
  RowCache none(4, 0);
  none.Insert(1, RowFor(1).data());
  std::vector<float> out(4);
  CHECK_FALSE(none.Lookup(1, out.data()));
  RowCache cache(4, 256 << 10);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, &wrong, t] {
      std::vector<float> row(4);
      for (uint64_t i = 0; i < 20000; ++i) {
        const uint64_t key = (i * 7919 + static_cast<uint64_t>(t)) % 5000;
        if (cache.Lookup(key, row.data())) {
          if (row != RowFor(key)) wrong.fetch_add(1);
        } else {
          cache.Insert(key, RowFor(key).data());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong.load() == 0);
  CHECK(cache.rows() <= cache.capacity());
}

}  // namespace
}  // namespace sparta::row_cache_test
