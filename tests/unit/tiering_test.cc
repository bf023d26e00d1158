// The pieces of tables larger than memory, without sockets: the admission
// sketch against exact counts, a table shard's CLOCK eviction to a real
// RocksDB and back (rows come back bit for bit, changed rows are written,
// unchanged ones dropped), expiry by stamp, and the config keys that drive
// them (byte sizes, per-table overrides, errors naming file, line and key).
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include <catch2/catch.hpp>

#include "common/config.h"
#include "server/admission_counter.h"
#include "server/cold_key_filter.h"
#include "server/optimizer.h"
#include "server/row_store.h"
#include "server/table_policy.h"
#include "server/table_shard.h"

namespace sparta::tiering_test {
namespace {

namespace fs = std::filesystem;

TEST_CASE("the admission sketch never undercounts and is exact when roomy", "[tiering]") {
  AdmissionCounter roomy(1 << 20), tight(256);
  std::map<uint64_t, uint32_t> truth;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t key = rng() % 5000;
    const uint32_t count = 1 + rng() % 3;
    truth[key] += count;
    roomy.Add(key, count);
    tight.Add(key, count);
  }
  int overcounted = 0;
  for (const auto& [key, n] : truth) {
    const uint32_t exact = std::min(n, AdmissionCounter::kMax);
    REQUIRE(roomy.Estimate(key) == exact);
    REQUIRE(tight.Estimate(key) >= exact);
    overcounted += tight.Estimate(key) > exact;
  }
  CHECK(overcounted > 0);  // 64 counters a row for 5000 keys: collisions show
  auto [before, after] = roomy.Add(123456789, 300);
  CHECK(before == 0);
  CHECK(after == AdmissionCounter::kMax);  // saturates
}

struct TempDir {
  TempDir() : path(fs::temp_directory_path() / ("sparta-tiering-" + std::to_string(getpid()))) { fs::remove_all(path); }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

pb::TableSpec SparseSpec() {
  pb::TableSpec spec;
  spec.set_id(3);
  spec.set_name("emb");
  spec.set_dim(4);
  spec.mutable_initializer()->set_type(pb::InitializerSpec::UNIFORM);
  spec.mutable_initializer()->set_scale(0.1f);
  spec.mutable_optimizer()->set_type(pb::OptimizerSpec::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(0.1f);
  spec.mutable_optimizer()->set_initial_accumulator(0.1f);
  return spec;
}

// A fresh cold-tier RocksDB with the table of SparseSpec() in it.
struct ColdTier {
  ColdTier() {
    REQUIRE(store.ok());
    REQUIRE((*store)->AddTable(spec.id()).ok());
    REQUIRE(optimizer.ok());
  }
  TempDir tmp;
  absl::StatusOr<std::unique_ptr<RowStore>> store =
      RowStore::Open((tmp.path / "db").string(), /*wal=*/false, /*fresh=*/true, 8 << 20);
  const pb::TableSpec spec = SparseSpec();
  absl::StatusOr<std::unique_ptr<Optimizer>> optimizer = Optimizer::Create(spec.optimizer());
};

TEST_CASE("the cold-key filter has no false negatives and few false positives as it grows", "[tiering]") {
  ColdKeyFilter filter;
  CHECK_FALSE(filter.MayContain(1));
  CHECK(filter.bytes() == 0);
  std::mt19937_64 rng(11);
  std::vector<uint64_t> added(300000);
  for (auto& key : added) key = rng();
  for (uint64_t key : added) filter.Add(key);
  for (uint64_t key : added) REQUIRE(filter.MayContain(key));
  // Adding a key again does not grow it.
  const size_t bytes = filter.bytes();
  for (size_t i = 0; i < 1000; ++i) filter.Add(added[i]);
  CHECK(filter.bytes() == bytes);
  // Seven generations (4096, 8192, ... keys), about 0.5% each: their false
  // positives add up, and still save 19 of 20 lookups of unseen keys.
  size_t false_positives = 0;
  const size_t probes = 200000;
  for (size_t i = 0; i < probes; ++i) false_positives += filter.MayContain(rng());
  CHECK(false_positives < probes / 20);
  // About 1.5 bytes a key, at most twice that just after a generation starts.
  CHECK(bytes < added.size() * 3 + 4096 * 2);
}

TEST_CASE("evicted rows come back from the store bit for bit", "[tiering]") {
  ColdTier tier;
  auto& store = tier.store;
  const pb::TableSpec& spec = tier.spec;
  auto& optimizer = tier.optimizer;
  TableShard shard(9, &spec, optimizer->get(), EvictionPolicy::kLru, /*small_chunks=*/true);
  const float grad[4] = {0.5f, -0.25f, 1.0f, 2.0f};
  std::map<uint64_t, std::vector<float>> expected;
  for (uint64_t key = 1; key <= 1000; ++key) {
    const uint32_t slot = shard.Insert(key, nullptr, false);
    if (key % 2 == 0) {  // even keys trained, odd ones only read
      shard.MarkChanged(slot);
      shard.Apply(shard.row(slot), grad);
    }
    expected[key].assign(shard.row(slot), shard.row(slot) + shard.stride());
  }
  // Keys 1..100 used again: with LRU they outlive the others.
  for (uint64_t key = 1; key <= 100; ++key) shard.Touch(shard.FindSlot(key));
  RowBatch batch;
  const size_t evicted = shard.Evict(800, (*store)->column(spec.id()), &batch);
  REQUIRE((*store)->Write(&batch).ok());
  CHECK(evicted == 800);
  CHECK(shard.hot_rows() == 200);
  for (uint64_t key = 1; key <= 100; ++key) CHECK(shard.FindSlot(key) != TableShard::kNoSlot);
  // Only the changed rows went to the store; the unchanged are their keys'
  // initial values, recreated on the next touch.
  CHECK(shard.cold_rows() == 400);
  CHECK(shard.stored_rows() == 400);

  std::vector<uint64_t> keys;
  for (uint64_t key = 101; key <= 1000; ++key) {
    if (shard.FindSlot(key) == TableShard::kNoSlot) keys.push_back(key);
  }
  REQUIRE(keys.size() == 800);
  // Every stored key may be cold; the executor looks up no key that never
  // went cold (a few false positives of 1000 unseen keys at most).
  size_t maybe_unseen = 0;
  for (uint64_t key : keys) {
    if (key % 2 == 0) CHECK(shard.MayBeCold(key));
  }
  for (uint64_t key = 5000; key < 6000; ++key) maybe_unseen += shard.MayBeCold(key);
  CHECK(maybe_unseen < 20);
  std::vector<uint32_t> shards(keys.size(), 9);
  std::vector<float> rows(keys.size() * shard.stride());
  std::vector<uint8_t> found;
  REQUIRE((*store)->MultiGet((*store)->column(spec.id()), shards, keys, shard.stride(), rows.data(), &found).ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    REQUIRE(static_cast<bool>(found[i]) == (keys[i] % 2 == 0));
    const uint32_t slot = found[i] ? shard.Insert(keys[i], rows.data() + i * shard.stride(), /*from_store=*/true)
                                   : shard.Insert(keys[i], nullptr, false);
    REQUIRE(std::memcmp(shard.row(slot), expected[keys[i]].data(), shard.stride() * sizeof(float)) == 0);
  }
  CHECK(shard.cold_rows() == 0);
  CHECK(shard.hot_rows() == 1000);
  CHECK(shard.stored_rows() == 400);
}

TEST_CASE("a shard whose rows went cold gives their memory back, every hot row as it was", "[tiering]") {
  ColdTier tier;
  auto& store = tier.store;
  const pb::TableSpec& spec = tier.spec;
  TableShard shard(9, &spec, tier.optimizer->get(), EvictionPolicy::kS3Fifo, /*small_chunks=*/true, /*stamped=*/true);
  std::map<uint64_t, std::vector<float>> expected;
  auto add = [&](uint64_t first, uint64_t n) {
    for (uint64_t key = first; key < first + n; ++key) {
      const uint32_t slot = shard.Insert(key, nullptr, false, static_cast<uint32_t>(key));
      shard.MarkChanged(slot);
      const float grad[4] = {0.5f, -0.25f, static_cast<float>(key % 7), 2.0f};
      shard.Apply(shard.row(slot), grad);
      expected[key].assign(shard.row(slot), shard.row(slot) + shard.stride());
    }
  };
  auto check_hot = [&] {
    size_t hot = 0;
    shard.ForEach([&](uint64_t key, uint32_t slot) {
      ++hot;
      REQUIRE(std::memcmp(shard.row(slot), expected[key].data(), shard.stride() * sizeof(float)) == 0);
      REQUIRE(shard.stamp(slot) == static_cast<uint32_t>(key));
    });
    CHECK(hot == shard.hot_rows());
  };
  add(1, 20000);
  RowBatch batch;
  // A few rows go: nothing to give back yet.
  CHECK(shard.Evict(1000, (*store)->column(spec.id()), &batch) == 1000);
  CHECK(shard.Shrink() == 0);
  // Most go: the hot rows left move down, and the memory goes back.
  const size_t before = shard.bytes();
  CHECK(shard.Evict(16000, (*store)->column(spec.id()), &batch) == 16000);
  CHECK(shard.hot_rows() == 3000);
  const size_t moved = shard.Shrink();
  INFO("moved " << moved << " rows; " << before << " bytes before, " << shard.bytes() << " after");
  CHECK(moved > 0);
  CHECK(shard.bytes() < before / 3);
  check_hot();
  // It goes on as before: new rows, evictions by the policy, then all of it
  // again once more rows have left.
  add(100000, 5000);
  CHECK(shard.Evict(4000, (*store)->column(spec.id()), &batch) == 4000);
  check_hot();
  CHECK(shard.hot_rows() == 4000);
  CHECK(shard.Evict(3000, (*store)->column(spec.id()), &batch) == 3000);
  CHECK(shard.Shrink() > 0);
  check_hot();
  CHECK(shard.hot_rows() == 1000);
  REQUIRE((*store)->Write(&batch).ok());
}

TEST_CASE("LFU keeps the rows used most, LRU the rows used last", "[tiering]") {
  const pb::TableSpec spec = SparseSpec();
  auto optimizer = Optimizer::Create(spec.optimizer());
  REQUIRE(optimizer.ok());
  for (EvictionPolicy policy : {EvictionPolicy::kLru, EvictionPolicy::kLfu}) {
    TableShard shard(0, &spec, optimizer->get(), policy);
    for (uint64_t key = 0; key < 100; ++key) shard.Insert(key, nullptr, false);
    // Keys 0..9: used often long ago; keys 90..99: used once, just now.
    for (int round = 0; round < 10; ++round) {
      for (uint64_t key = 0; key < 10; ++key) shard.Touch(shard.FindSlot(key));
    }
    RowBatch batch;
    shard.Evict(50, nullptr, &batch);  // the hand clears the marks of the first pass
    for (uint64_t key = 90; key < 100; ++key) {
      if (shard.FindSlot(key) != TableShard::kNoSlot) shard.Touch(shard.FindSlot(key));
    }
    shard.Evict(shard.hot_rows() - 10, nullptr, &batch);
    int frequent = 0;
    for (uint64_t key = 0; key < 10; ++key) frequent += shard.FindSlot(key) != TableShard::kNoSlot;
    if (policy == EvictionPolicy::kLfu) {
      CHECK(frequent == 10);
    } else {
      CHECK(frequent < 10);
    }
  }
}

TEST_CASE("expiry deletes rows stamped before the cut, from DRAM and from the store", "[tiering]") {
  ColdTier tier;
  auto& store = tier.store;
  const pb::TableSpec& spec = tier.spec;
  auto& optimizer = tier.optimizer;
  TableShard shard(2, &spec, optimizer->get(), EvictionPolicy::kLru, false, /*stamped=*/true);
  CHECK(shard.record_floats() == shard.stride() + 1);
  for (uint64_t key = 0; key < 100; ++key) {
    const uint32_t slot = shard.Insert(key, nullptr, false, /*stamp=*/static_cast<uint32_t>(key));
    shard.MarkChanged(slot);
  }
  RowBatch batch;
  CHECK(shard.Persist((*store)->column(spec.id()), &batch) == 100);
  REQUIRE((*store)->Write(&batch).ok());
  CHECK(shard.ExpireHot(1000, /*oldest=*/40, (*store)->column(spec.id()), &batch) == 40);
  REQUIRE((*store)->Write(&batch).ok());
  CHECK(shard.hot_rows() == 60);
  CHECK(shard.stored_rows() == 60);
  size_t in_store = 0;
  REQUIRE((*store)
              ->ForEachRow((*store)->column(spec.id()), 2,
                           [&](uint64_t key, std::span<const float> record) {
                             uint32_t stamp;
                             std::memcpy(&stamp, record.data() + shard.stride(), sizeof(stamp));
                             CHECK(stamp == key);  // the stamp travels with the row
                             CHECK(key >= 40);
                             ++in_store;
                           })
              .ok());
  CHECK(in_store == 60);
}

TEST_CASE("tiering keys: sizes with units, per-table overrides, errors with file, line and key", "[tiering]") {
  CHECK(*ParseByteSize("512MiB") == 512ull << 20);
  CHECK(*ParseByteSize("8GiB") == 8ull << 30);
  CHECK(*ParseByteSize("1.5 GB") == 1500000000ull);
  CHECK(*ParseByteSize("4096") == 4096);
  CHECK(*ParseByteSize("") == 0);
  CHECK_FALSE(ParseByteSize("12 parsecs").ok());
  CHECK_FALSE(ParseByteSize("-1MiB").ok());

  const std::string base = "cluster:\n  scheduler: 127.0.0.1:1\n  servers: 1\n  workers: 1\ndata:\n  train: a\n";
  auto c = ParseConfig(base +
                           "server:\n  memory_limit: 2GiB\n"
                           "embedding:\n  admission:\n    min_count: 3\n  eviction:\n    policy: lfu\n"
                           "  tables:\n    fm.wv:\n      admission:\n        probability: 0.25\n",
                       "job.yaml", {"embedding.tables.dnn.emb.eviction.ttl=100 steps"});
  REQUIRE(c.ok());
  CHECK(c->server.memory_limit_bytes == 2ull << 30);
  const TablePolicyConfig& wv = c->embedding.For("fm.wv");
  CHECK(wv.admission_probability == 0.25);
  CHECK(wv.admission_min_count == 3);  // the default, inherited
  CHECK(wv.eviction_policy == "lfu");
  CHECK(c->embedding.For("dnn.emb").ttl == "100 steps");
  CHECK(c->embedding.For("dnn.emb").admission_min_count == 3);
  CHECK(c->embedding.For("other").admission_probability == 1.0);

  pb::TableSpec dense;
  dense.set_name("fm.bias");
  dense.set_kind(pb::TableSpec::DENSE);
  CHECK(ResolveTablePolicy(dense, *c).admits_every_key());  // dense tables: never filtered
  pb::TableSpec sparse;
  sparse.set_name("dnn.emb");
  CHECK(ResolveTablePolicy(sparse, *c).ttl_steps == 100);
  CHECK(ResolveTablePolicy(sparse, *c).eviction == EvictionPolicy::kLfu);

  auto bad = ParseConfig(base + "server:\n  memory_limit: 2 GiBs\n", "job.yaml", {});
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("job.yaml:8: key 'server.memory_limit'") != std::string::npos);
  bad = ParseConfig(base + "embedding:\n  tables:\n    fm.wv:\n      eviction:\n        policy: fifo\n", "job.yaml", {});
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("job.yaml:11: key 'embedding.tables.fm.wv.eviction.policy'") !=
        std::string::npos);
  bad = ParseConfig(base + "embedding:\n  eviction:\n    ttl: 3 fortnights\n", "job.yaml", {});
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("embedding.eviction.ttl") != std::string::npos);
}

}  // namespace
}  // namespace sparta::tiering_test
