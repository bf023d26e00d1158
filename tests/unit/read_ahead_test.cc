// A tiered executor reads a request's cold rows as the request arrives, while
// it waits behind others (ShardExecutor::ReadAhead), and the result is still
// exactly that of an executor holding every row in DRAM: rows the tasks ahead
// bring back and change meanwhile are taken from DRAM, not from the read.
// Own threads, a real RocksDB, no sockets.
#include <cstring>
#include <random>
#include <span>

#include <catch2/catch.hpp>

#include "tests/unit/executor_harness.h"

namespace sparta::read_ahead_test {
namespace {

constexpr uint32_t kDim = 4;

// Sends `rounds` of pull + push of 200 keys out of `key_space`, each round
// sharing half its keys with the one before, `window` rounds at a time
// without waiting, and returns every key's weights pulled at the end.
std::vector<float> Train(ExecutorHarness& h, uint64_t key_space, int rounds, int window) {
  std::mt19937_64 rng(7);
  std::vector<uint64_t> keys(200);
  for (auto& k : keys) k = rng() % key_space;
  std::vector<std::shared_ptr<Request>> in_flight;
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < keys.size(); i += 2) keys[i] = rng() % key_space;
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    while (keys.size() < 200) keys.push_back(key_space + rng() % key_space);  // a few never seen before
    std::vector<float> grads(keys.size() * kDim);
    for (size_t i = 0; i < grads.size(); ++i) grads[i] = 0.01f * static_cast<float>((round * 31 + i) % 17) - 0.08f;
    in_flight.push_back(h.Send(pb::PULL, 0, keys));
    in_flight.push_back(h.Send(pb::PUSH, 0, keys, grads));
    if (in_flight.size() >= 2 * static_cast<size_t>(window)) {
      for (auto& r : in_flight) h.WaitFor(r);
      in_flight.clear();
    }
  }
  for (auto& r : in_flight) h.WaitFor(r);
  std::vector<uint64_t> all(2 * key_space);
  for (uint64_t k = 0; k < all.size(); ++k) all[k] = k;
  return h.Pull(0, all);
}

TEST_CASE("cold rows read while a request waits give the rows of an all-DRAM run bit for bit", "[tiering]") {
  ScratchStore scratch("sparta-read-ahead");
  constexpr uint64_t kKeySpace = 4000;
  constexpr int kRounds = 300, kWindow = 4;
  std::vector<float> reference;
  {
    ExecutorHarness all_dram(AdagradTable("emb", kDim, 0.1f), ShardExecutor::Options{});
    reference = Train(all_dram, kKeySpace, kRounds, kWindow);
  }
  // Room for about 500 rows of the ~8000 the run makes.
  const uint64_t row_cost = 2 * kDim * sizeof(float) + TableShard::kRowOverheadBytes;
  ExecutorHarness tiered(AdagradTable("emb", kDim, 0.1f),
                         ShardExecutor::Options{.store = scratch.store.get(), .memory_budget = 500 * row_cost});
  const std::vector<float> values = Train(tiered, kKeySpace, kRounds, kWindow);
  const TableTierStats& stats = *tiered.executor->tier_stats(1);
  INFO("demoted " << stats.demoted.load() << ", promoted " << stats.promoted.load() << ", cold reads "
                  << stats.cold_reads.load() << " (" << stats.cold_reads_ahead.load() << " while waiting)");
  CHECK(stats.demoted.load() > 10 * 500);
  CHECK(stats.promoted.load() > 1000);
  // Most requests wait behind the one before (every key is in one shard),
  // so most cold rows are read ahead.
  CHECK(stats.cold_reads_ahead.load() > stats.cold_reads.load() / 2);
  REQUIRE(values.size() == reference.size());
  size_t differ = 0;
  for (size_t i = 0; i < values.size(); ++i) differ += std::memcmp(&values[i], &reference[i], sizeof(float)) != 0;
  CHECK(differ == 0);
  // The evicted rows went to the cold tier's log, not to RocksDB...
  INFO("in the log " << tiered.executor->log_rows() << " rows, " << tiered.executor->log_index_bytes()
                     << " bytes of index; moved to RocksDB " << tiered.executor->log_moved_rows());
  CHECK(tiered.executor->log_rows() > 1000);
  // The log's index outgrew its share (3/4 of this small budget), so its
  // oldest rows moved to RocksDB as new ones came, and were read from there.
  CHECK(tiered.executor->log_moved_rows() > 1000);
  CHECK(tiered.executor->log_file_bytes() > 0);
  // ...and a checkpoint's writes have them drained into RocksDB first: the
  // store then holds every changed row, hot or cold, as the all-DRAM run
  // has it.
  absl::StatusOr<size_t> persisted;
  size_t visited = 0;
  tiered.RunThere([&] {
    persisted = tiered.executor->PersistChanged();
    REQUIRE(persisted.ok());
    REQUIRE(tiered.executor->ForEachWeights(*tiered.table, 0, [&](uint64_t key, std::span<const float> weights) {
      REQUIRE(key < 2 * kKeySpace);
      REQUIRE(weights.size() == kDim);
      CHECK(std::memcmp(weights.data(), &reference[key * kDim], kDim * sizeof(float)) == 0);
      ++visited;
      return absl::OkStatus();
    }).ok());
  });
  CHECK(tiered.executor->log_rows() == 0);
  CHECK(tiered.executor->log_file_bytes() == 0);
  // Every row the store holds was visited: each key pushed (about 5000).
  std::vector<uint64_t> stored;
  tiered.RunThere([&] { tiered.executor->CountRowsByTable(&stored); });
  REQUIRE(stored.size() > 1);
  CHECK(visited == stored[1]);
  CHECK(visited > 4000);
}

TEST_CASE("a table with a TTL skips the cold log: its evicted rows go to RocksDB and come back bit for bit",
          "[tiering]") {
  // Expiry sweeps such a table's cold rows in RocksDB, so they must be
  // there; the eviction batch's rows are split from the logged tables'.
  ScratchStore scratch("sparta-ttl-no-log");
  constexpr uint64_t kKeySpace = 4000;
  Config job;
  job.embedding.defaults.ttl = "1000000 steps";  // long enough that nothing expires
  std::vector<float> reference;
  {
    ExecutorHarness all_dram(AdagradTable("emb", kDim, 0.1f), ShardExecutor::Options{}, job);
    reference = Train(all_dram, kKeySpace, 150, 4);
  }
  const uint64_t row_cost = 2 * kDim * sizeof(float) + TableShard::kRowOverheadBytes + 4;
  ExecutorHarness tiered(AdagradTable("emb", kDim, 0.1f),
                         ShardExecutor::Options{.store = scratch.store.get(), .memory_budget = 500 * row_cost}, job);
  const std::vector<float> values = Train(tiered, kKeySpace, 150, 4);
  const TableTierStats& stats = *tiered.executor->tier_stats(1);
  CHECK(stats.demoted.load() > 5000);
  CHECK(stats.promoted.load() > 500);
  CHECK(tiered.executor->log_rows() == 0);
  CHECK(tiered.executor->log_file_bytes() == 0);
  REQUIRE(values.size() == reference.size());
  size_t differ = 0;
  for (size_t i = 0; i < values.size(); ++i) differ += std::memcmp(&values[i], &reference[i], sizeof(float)) != 0;
  CHECK(differ == 0);
}

}  // namespace
}  // namespace sparta::read_ahead_test
