// The parts of published model versions (serving.publish_every) that need
// no sockets: an executor's ChangeLog keeps a failed cut's changes for the
// next one and forgets what a published base holds; PlanVersions takes a
// follower to the newest version by the cheapest start; a delta file reads
// back what was written, deletions included; and a served version applies
// deltas (changed and deleted rows, shards replaced whole, the overlay
// folded) without changing the version before. A serving cluster's side of
// following: a server answers each staged version whole and folds the
// older ones into its rows; its scheduler stages and announces versions.
#include <unistd.h>

#include <filesystem>
#include <map>

#include <catch2/catch.hpp>

#include "common/checkpoint_files.h"
#include "common/delta_files.h"
#include "common/hash.h"
#include "server/change_log.h"
#include "server/delta_file.h"
#include "server/initializer.h"
#include "server/row_store.h"
#include "scheduler/serving_follower.h"
#include "server/served_versions.h"
#include "server/version_overlay.h"
#include "tests/unit/executor_harness.h"
#include "worker/serving/serving_tables.h"
#include "common/version_plan.h"

namespace sparta::published_versions_test {
namespace {

using Row = ChangeLog::Row;

TEST_CASE("a change log returns what changed since the base, across cuts that were never published",
          "[publish]") {
  ChangeLog log;
  log.Add(7, 1, 100);
  log.Add(7, 1, 100);  // changed twice: once in the delta
  log.Add(7, 0, 5);
  ChangeLog::Changes first = log.Cut(1, 0);
  CHECK(first.rows == std::vector<Row>{{7, 0, 5}, {7, 1, 100}});
  // Cut 1 was published: cut 2 goes on from it.
  log.Add(8, 2, 9);
  log.AddReplaced(3);
  ChangeLog::Changes second = log.Cut(2, 1);
  CHECK(second.rows == std::vector<Row>{{8, 2, 9}});
  CHECK(second.replaced == std::vector<uint32_t>{3});
  // Cut 2 failed elsewhere: cut 3 goes on from 1 again, and holds cut 2's
  // changes with its own.
  log.Add(7, 0, 6);
  ChangeLog::Changes third = log.Cut(3, 1);
  CHECK(third.rows == std::vector<Row>{{7, 0, 6}, {8, 2, 9}});
  CHECK(third.replaced == std::vector<uint32_t>{3});
  // Cut 3 was published: nothing before it is kept.
  const size_t before = log.bytes();
  CHECK(log.Cut(4, 3).rows.empty());
  CHECK(log.bytes() < before);
}

TEST_CASE("a change log stays bounded by the distinct rows of an interval", "[publish]") {
  ChangeLog log;
  for (int step = 0; step < 200; ++step) {
    for (uint64_t key = 0; key < 1000; ++key) log.Add(1, 0, key);
  }
  CHECK(log.bytes() < 4 * 65536 * sizeof(Row));
  CHECK(log.Cut(1, 0).rows.size() == 1000);
}

DeltaRef Delta(uint64_t version, uint64_t base) { return {version, base, std::to_string(version)}; }

std::vector<uint64_t> Versions(const VersionPlan& plan) {
  std::vector<uint64_t> v;
  for (const DeltaRef& d : plan.deltas) v.push_back(d.version);
  return v;
}

TEST_CASE("a follower takes the cheapest way to the newest version it can reach", "[publish]") {
  using Start = VersionPlan::Start;
  // Nothing published yet.
  CHECK(PlanVersions(std::nullopt, {}, {}).start == Start::kNothing);
  // A job's first deltas, before any checkpoint: from the empty model.
  VersionPlan p = PlanVersions(std::nullopt, {}, {Delta(1, 0), Delta(2, 1)});
  CHECK(p.start == Start::kEmpty);
  CHECK(Versions(p) == std::vector<uint64_t>{1, 2});
  CHECK(p.target == 2);
  // Serving 2: only what follows it.
  p = PlanVersions(2, {}, {Delta(1, 0), Delta(2, 1), Delta(3, 2)});
  CHECK(p.start == Start::kCurrent);
  CHECK(Versions(p) == std::vector<uint64_t>{3});
  CHECK(PlanVersions(3, {}, {Delta(1, 0), Delta(2, 1), Delta(3, 2)}).start == Start::kNothing);
  // Started late: the newest checkpoint and the deltas since it.
  p = PlanVersions(std::nullopt, {2, 4}, {Delta(4, 3), Delta(5, 4), Delta(6, 5)});
  CHECK(p.start == Start::kCheckpoint);
  CHECK(p.checkpoint == 4);
  CHECK(Versions(p) == std::vector<uint64_t>{5, 6});
  // Behind the pruned deltas: the checkpoint, as its own chain is cut.
  p = PlanVersions(1, {4}, {Delta(4, 3), Delta(5, 4)});
  CHECK(p.start == Start::kCheckpoint);
  CHECK(p.target == 5);
  // Another history (a job restored from checkpoint 2): what it reaches is
  // newer than what is served, from the checkpoint it went on from.
  p = PlanVersions(5, {2}, {Delta(7, 2), Delta(8, 7)});
  CHECK(p.start == Start::kCheckpoint);
  CHECK(p.checkpoint == 2);
  CHECK(Versions(p) == std::vector<uint64_t>{7, 8});
  // A checkpoint alone, no deltas (publish_every unset).
  p = PlanVersions(3, {3, 5}, {});
  CHECK(p.start == Start::kCheckpoint);
  CHECK(p.checkpoint == 5);
  CHECK(p.deltas.empty());
}

TEST_CASE("a delta file reads back its rows and deletions in key order", "[publish]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sparta-delta-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "table-1.0.sst").string();
  DeltaFileWriter writer(path);
  const std::vector<float> a = {1.5f, -2.0f}, b = {0.25f, 8.0f};
  REQUIRE(writer.Put(0, 3, a).ok());
  REQUIRE(writer.Delete(0, 9).ok());
  REQUIRE(writer.Put(2, 1, b).ok());
  REQUIRE(writer.Finish().ok());
  CHECK(writer.rows() == 3);
  std::vector<std::tuple<uint32_t, uint64_t, std::vector<float>>> read;
  REQUIRE(ReadDeltaFile(path, [&](uint32_t shard, uint64_t key, std::span<const float> w) {
            read.emplace_back(shard, key, std::vector<float>(w.begin(), w.end()));
          }).ok());
  CHECK(read == std::vector<std::tuple<uint32_t, uint64_t, std::vector<float>>>{
                    {0, 3, a}, {0, 9, {}}, {2, 1, b}});
  // Nothing written, nothing made.
  DeltaFileWriter empty((dir / "table-2.0.sst").string());
  REQUIRE(empty.Finish().ok());
  CHECK_FALSE(std::filesystem::exists(dir / "table-2.0.sst"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sparta::published_versions_test

namespace sparta::published_versions_test {
namespace {

// A delta folder as servers write them: one part per server, a file per
// table, and the manifest.
struct DeltaWriter {
  std::filesystem::path dir;
  pb::DeltaManifest manifest;

  DeltaWriter(const std::filesystem::path& root, uint64_t version, uint64_t base, const pb::TableSpec& table,
              uint32_t shards) {
    dir = root / DeltaName(version, base);
    std::filesystem::create_directories(dir / "server-0");
    manifest.set_version(version);
    manifest.set_base(base);
    for (uint32_t s = 0; s < shards; ++s) manifest.add_shard_owner(0);
    *manifest.add_tables() = table;
  }
  // Rows (key -> weights; empty: deleted), written in (shard, key) order.
  void Write(const pb::TableSpec& table, const std::map<std::pair<uint32_t, uint64_t>, std::vector<float>>& rows) {
    const std::string path = DeltaFilePath(0, table.id(), 0);
    DeltaFileWriter file((dir / path).string());
    for (const auto& [at, w] : rows) {
      REQUIRE((w.empty() ? file.Delete(at.first, at.second) : file.Put(at.first, at.second, w)).ok());
    }
    REQUIRE(file.Finish().ok());
    pb::DeltaFile* named = manifest.add_files();
    named->set_path(path);
    named->set_table(table.id());
    named->set_rows(file.rows());
    manifest.set_rows(manifest.rows() + file.rows());
  }
  std::string Finish() {
    REQUIRE(WriteDeltaManifest(dir.string(), manifest).ok());
    return dir.string();
  }
};

TEST_CASE("deltas applied to a served version: rows changed, deleted, shards replaced whole, overlays folded",
          "[publish][serving]") {
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("sparta-serving-deltas-" + std::to_string(getpid()));
  std::filesystem::remove_all(root);
  constexpr uint32_t kShards = 4;
  constexpr int kBits = 2;
  pb::TableSpec table;
  table.set_id(2);
  table.set_name("emb");
  table.set_dim(2);  // initializer "zero": a key with no row reads zeros
  Config config;
  auto empty = ServingTables::Empty(root.string(), {table}, {table}, config);
  REQUIRE(empty.ok());
  auto row_of = [](const ServingTables& t, uint64_t key) {
    std::vector<float> out;
    const uint64_t keys[] = {key};
    REQUIRE(t.Gather(0, keys, &out).ok());
    return out;
  };
  auto at = [&](uint64_t key) { return std::pair<uint32_t, uint64_t>(ShardOf(key, kBits), key); };

  // Version 1: keys 1..200 get rows.
  DeltaWriter first(root, 1, 0, table, kShards);
  std::map<std::pair<uint32_t, uint64_t>, std::vector<float>> rows;
  for (uint64_t key = 1; key <= 200; ++key) rows[at(key)] = {static_cast<float>(key), 0.5f};
  first.Write(table, rows);
  auto v1 = (*empty)->WithDelta(first.Finish());
  REQUIRE(v1.ok());
  CHECK((*v1)->version() == 1);
  CHECK((*v1)->rows() == 200);
  CHECK(row_of(**v1, 7) == std::vector<float>{7.0f, 0.5f});
  // A delta goes on from its base only.
  CHECK(absl::IsAborted((*v1)->WithDelta(first.dir.string()).status()));

  // Version 2: key 7 changes, key 8 is deleted (expired), and one shard
  // comes whole from a new server: of its rows only key `kept` is left.
  const uint32_t replaced = ShardOf(9, kBits);
  uint64_t kept = 0;
  for (uint64_t key = 1; key <= 200 && kept == 0; ++key) {
    if (ShardOf(key, kBits) == replaced && key != 9) kept = key;
  }
  REQUIRE(kept != 0);
  DeltaWriter second(root, 2, 1, table, kShards);
  second.manifest.add_replaced_shards(replaced);
  second.Write(table, {{at(7), {70.0f, 1.0f}}, {at(8), {}}, {at(kept), {-1.0f, -2.0f}}});
  auto v2 = (*v1)->WithDelta(second.Finish());
  REQUIRE(v2.ok());
  if (ShardOf(7, kBits) != replaced) CHECK(row_of(**v2, 7) == std::vector<float>{70.0f, 1.0f});
  if (ShardOf(8, kBits) != replaced) CHECK(row_of(**v2, 8) == std::vector<float>{0.0f, 0.0f});
  CHECK(row_of(**v2, kept) == std::vector<float>{-1.0f, -2.0f});
  CHECK(row_of(**v2, 9) == std::vector<float>{0.0f, 0.0f});  // in the replaced shard, not in its part
  uint64_t left = 0;
  for (uint64_t key = 1; key <= 200; ++key) {
    const std::vector<float> r = row_of(**v2, key);
    left += r != std::vector<float>{0.0f, 0.0f};
  }
  CHECK((*v2)->rows() == left);
  // The version before is untouched: versions share rows, never change them.
  CHECK(row_of(**v1, 7) == std::vector<float>{7.0f, 0.5f});
  CHECK(row_of(**v1, 9) == std::vector<float>{9.0f, 0.5f});

  // Version 3: enough new rows to fold the overlay into the base; every
  // row reads the same after the fold.
  DeltaWriter third(root, 3, 2, table, kShards);
  std::map<std::pair<uint32_t, uint64_t>, std::vector<float>> many;
  for (uint64_t key = 1000; key < 1000 + 70000; ++key) many[at(key)] = {1.0f, static_cast<float>(key)};
  third.Write(table, many);
  auto v3 = (*v2)->WithDelta(third.Finish());
  REQUIRE(v3.ok());
  CHECK((*v3)->rows() == left + 70000);
  CHECK(row_of(**v3, 1000 + 4321) == std::vector<float>{1.0f, 5321.0f});
  CHECK(row_of(**v3, kept) == std::vector<float>{-1.0f, -2.0f});
  CHECK(row_of(**v3, 9) == std::vector<float>{0.0f, 0.0f});
  for (uint64_t key = 1; key <= 200; ++key) CHECK(row_of(**v3, key) == row_of(**v2, key));
  std::filesystem::remove_all(root);
}


TEST_CASE("a delta whose part files are gone or short is an error, never a version with fewer changes",
          "[publish][serving]") {
  // A checkpoint prunes the deltas it holds (PruneDeltas) while a follower
  // may be reading one: its manifest read, its part files being removed. A
  // follower that listed the folder then applied what was left: a version
  // with the right number and the wrong rows, served as if it were whole.
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("sparta-pruned-deltas-" + std::to_string(getpid()));
  std::filesystem::remove_all(root);
  pb::TableSpec table;
  table.set_id(2);
  table.set_name("emb");
  table.set_dim(2);
  Config config;
  auto empty = ServingTables::Empty(root.string(), {table}, {table}, config);
  REQUIRE(empty.ok());
  auto read_overlay = [&](const std::string& dir) {
    return VersionOverlay::Read(dir, [](uint32_t) { return true; }, [](uint32_t) { return 2u; }).status();
  };
  auto delta = [&](uint64_t version) {
    auto writer = std::make_unique<DeltaWriter>(root, version, 0, table, 1);
    writer->Write(table, {{{0, 1}, {1.0f, 2.0f}}, {{0, 2}, {3.0f, 4.0f}}, {{0, 3}, {}}});
    return writer;
  };

  auto whole = delta(1);
  const std::string whole_dir = whole->Finish();
  REQUIRE((*empty)->WithDelta(whole_dir).ok());
  REQUIRE(read_overlay(whole_dir).ok());

  // Both followers refuse the delta in `dir` with `code`, saying `why`:
  // the front-end (ServingTables) and a serving cluster's server
  // (VersionOverlay).
  auto refused = [&](const std::string& dir, absl::StatusCode code, const std::string& why) {
    const absl::Status applied = (*empty)->WithDelta(dir).status();
    CHECK(applied.code() == code);
    CHECK_THAT(std::string(applied.message()), Catch::Contains(why));
    CHECK(read_overlay(dir).code() == code);
  };
  SECTION("the parts removed after the manifest was written") {
    auto pruned = delta(2);
    const std::string dir = pruned->Finish();
    std::filesystem::remove_all(pruned->dir / "server-0");
    refused(dir, absl::StatusCode::kNotFound, "server-0/table-2.0.sst is missing");
  }
  SECTION("a part file with fewer rows than its manifest names") {
    auto short_one = delta(3);
    short_one->manifest.mutable_files(0)->set_rows(4);
    short_one->manifest.set_rows(4);
    refused(short_one->Finish(), absl::StatusCode::kDataLoss, "holds 3 rows");
  }
  SECTION("a manifest whose files do not add up to its rows, or that names a file outside its folder") {
    auto uncounted = delta(4);
    uncounted->manifest.set_rows(7);
    refused(uncounted->Finish(), absl::StatusCode::kDataLoss, "counts 7 rows");
    auto outside = delta(5);
    outside->manifest.mutable_files(0)->set_path("../delta-000001-from-000000/server-0/table-2.0.sst");
    refused(outside->Finish(), absl::StatusCode::kDataLoss, "outside the delta's folder");
  }
  std::filesystem::remove_all(root);
}

TEST_CASE("a serving cluster's server answers each staged version whole, and folds older ones into its rows",
          "[publish][serving]") {
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("sparta-served-versions-" + std::to_string(getpid()));
  std::filesystem::remove_all(root);
  constexpr uint32_t kDim = 4;
  ExecutorHarness server(AdagradTable("t", kDim, 0.1f), {.read_only = true});
  // The rows it restored (version 1), made here by pushes.
  server.Call(pb::PUSH, 0, {5, 6, 7}, std::vector<float>(3 * kDim, 0.5f));
  auto pull = [&](const ServedVersions& versions, uint64_t version) {
    auto overlays = versions.For(version);
    REQUIRE(overlays.ok());
    return server.Pull(0, {5, 6, 7, 8}, *overlays);
  };
  auto row = [&](const std::vector<float>& values, size_t i) {
    return std::vector<float>(values.begin() + static_cast<long>(i * kDim),
                              values.begin() + static_cast<long>((i + 1) * kDim));
  };
  std::vector<float> initial(kDim);
  InitializeWeights(server.spec.initializer(), 6, initial.data(), kDim);
  auto read = [&](const std::string& dir) {
    auto overlay = VersionOverlay::Read(dir, [](uint32_t) { return true; }, [](uint32_t) { return kDim; });
    REQUIRE(overlay.ok());
    return *overlay;
  };
  ServedVersions versions(1);
  const std::vector<float> v1 = pull(versions, 1);

  // Version 2: key 5 changes, key 6 is deleted (expired in training).
  DeltaWriter second(root, 2, 1, server.spec, 1);
  const std::vector<float> changed = {9.0f, 8.0f, 7.0f, 6.0f};
  second.Write(server.spec, {{{0, 5}, changed}, {{0, 6}, {}}});
  REQUIRE(versions.Stage(read(second.Finish())).ok());
  CHECK(versions.staged() == 2);
  CHECK(pull(versions, 1) == v1);  // version 1 as it was
  const std::vector<float> v2 = pull(versions, 2);
  CHECK(row(v2, 0) == changed);
  CHECK(row(v2, 1) == initial);  // as a key never seen
  CHECK(row(v2, 2) == row(v1, 2));
  CHECK(row(v2, 3) == row(v1, 3));
  CHECK(absl::IsOutOfRange(versions.For(3).status()));  // not staged
  // A delta that does not go on from what is staged is refused.
  DeltaWriter skip(root, 4, 3, server.spec, 1);
  skip.Write(server.spec, {{{0, 7}, changed}});
  CHECK(absl::IsFailedPrecondition(versions.Stage(read(skip.Finish()))));

  // Announcing 2 folds nothing: front-ends may still read at 1.
  CHECK(versions.Announce(2).empty());
  CHECK(pull(versions, 1) == v1);
  CHECK(pull(versions, 0) == v2);  // 0: the version announced
  // Version 3 (key 7) staged and announced: 2 is folded into the rows, 1 is gone.
  DeltaWriter third(root, 3, 2, server.spec, 1);
  const std::vector<float> seventh = {-1.0f, -2.0f, -3.0f, -4.0f};
  third.Write(server.spec, {{{0, 7}, seventh}});
  REQUIRE(versions.Stage(read(third.Finish())).ok());
  const auto fold = versions.Announce(3);
  REQUIRE(fold.size() == 1);
  CHECK(fold[0]->version() == 2);
  CHECK(versions.base() == 2);
  CHECK(absl::IsOutOfRange(versions.For(1).status()));
  const std::vector<const TableEntry*> tables = {server.table};
  server.RunThere([&] { server.executor->FoldOverlay(*fold[0], tables); });
  // The rows now hold version 2: read without its overlay, the same.
  CHECK(pull(versions, 2) == v2);
  const std::vector<float> v3 = pull(versions, 3);
  CHECK(row(v3, 2) == seventh);
  CHECK(row(v3, 0) == changed);

  // Checkpoint 9, staged whole (no delta went on from 3): its rows are
  // weights then optimizer state, and its one shard was saved by server 1.
  // Key 6 has a row again, key 7 has none, key 5 changed.
  const std::filesystem::path checkpoint = root / "ckpt-000009";
  {
    auto store = RowStore::Open((root / "live").string(), /*wal=*/false, /*fresh=*/true);
    REQUIRE(store.ok());
    REQUIRE((*store)->AddTable(server.spec.id()).ok());
    RowBatch batch;
    const std::vector<float> fifth = {1.0f, 1.5f, 2.0f, 2.5f, 0.1f, 0.1f, 0.1f, 0.1f};
    const std::vector<float> sixth = {3.0f, 3.5f, 4.0f, 4.5f, 0.2f, 0.2f, 0.2f, 0.2f};
    batch.Put((*store)->column(server.spec.id()), 0, 5, fifth.data(), 2 * kDim);
    batch.Put((*store)->column(server.spec.id()), 0, 6, sixth.data(), 2 * kDim);
    REQUIRE((*store)->Write(&batch).ok());
    std::filesystem::create_directories(checkpoint);
    REQUIRE((*store)->Checkpoint(CheckpointPartDir(checkpoint.string(), 1)).ok());
  }
  pb::CheckpointManifest manifest;
  manifest.set_version(9);
  manifest.add_shard_owner(1);
  *manifest.add_tables() = server.spec;
  REQUIRE(WriteManifest(checkpoint.string(), manifest).ok());
  auto whole = [&](uint32_t shards, uint32_t dim) {
    return VersionOverlay::ReadCheckpoint(checkpoint.string(), versions.staged(), shards,
                                          [](uint32_t) { return true; }, [dim](uint32_t) { return dim; });
  };
  CHECK(absl::IsFailedPrecondition(whole(2, kDim).status()));      // another number of shards
  CHECK(absl::IsFailedPrecondition(whole(1, kDim + 1).status()));  // rows of another width
  auto ninth = whole(1, kDim);
  REQUIRE(ninth.ok());
  CHECK((*ninth)->version() == 9);
  CHECK((*ninth)->base() == 3);
  CHECK((*ninth)->rows() == 2);
  CHECK((*ninth)->replaced_shards() == std::vector<uint32_t>{0});
  REQUIRE(versions.Stage(*ninth).ok());
  const std::vector<float> v9 = pull(versions, 9);
  CHECK(row(v9, 0) == std::vector<float>{1.0f, 1.5f, 2.0f, 2.5f});
  CHECK(row(v9, 1) == std::vector<float>{3.0f, 3.5f, 4.0f, 4.5f});
  std::vector<float> never(kDim);
  InitializeWeights(server.spec.initializer(), 7, never.data(), kDim);
  CHECK(row(v9, 2) == never);  // not in the checkpoint: no row at 9
  CHECK(pull(versions, 3) == v3);  // 3 as it was
  // Announced, then folded at the next announcement: the rows are 9's.
  for (const auto& overlay : versions.Announce(9)) {
    server.RunThere([&] { server.executor->FoldOverlay(*overlay, tables); });
  }
  DeltaWriter tenth(root, 10, 9, server.spec, 1);
  tenth.Write(server.spec, {{{0, 8}, seventh}});
  REQUIRE(versions.Stage(read(tenth.Finish())).ok());
  for (const auto& overlay : versions.Announce(10)) {
    server.RunThere([&] { server.executor->FoldOverlay(*overlay, tables); });
  }
  CHECK(versions.base() == 9);
  CHECK(pull(versions, 9) == v9);
  std::filesystem::remove_all(root);
}

TEST_CASE("a serving cluster's scheduler stages the next delta and announces it once every server has it",
          "[publish][serving]") {
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("sparta-serving-follower-" + std::to_string(getpid()));
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(VersionsDir(root.string()));
  pb::TableSpec table;
  table.set_id(1);
  table.set_dim(2);
  auto publish = [&](uint64_t version, uint64_t base) {
    DeltaWriter delta(VersionsDir(root.string()), version, base, table, 1);
    delta.Write(table, {{{0, version}, {1.0f, 2.0f}}});
    return delta.Finish();
  };
  const auto now = ServingFollower::Clock::now();
  ServingFollower follower(root.string(), /*restored=*/2, /*poll_seconds=*/0);
  CHECK_FALSE(follower.Poll(now));  // nothing published yet
  const std::string third = publish(3, 2);
  REQUIRE(follower.Poll(now));
  const pb::Header stage = follower.StageMessage();
  CHECK(stage.type() == pb::STAGE_VERSION);
  CHECK(stage.checkpoint().version() == 3);
  CHECK(stage.checkpoint().base() == 2);
  CHECK(std::filesystem::equivalent(stage.checkpoint().delta_dir(), third));
  CHECK_FALSE(follower.Poll(now));  // one at a time
  follower.OnStaged(/*node=*/1, 3);
  follower.OnStaged(/*node=*/2, 2);
  CHECK(follower.Behind(2));
  CHECK_FALSE(follower.MaybeAnnounce({1, 2}));
  CHECK(follower.announced() == 2);
  // A server that died does not hold the others back.
  CHECK(follower.MaybeAnnounce({1}));
  CHECK(follower.announced() == 3);
  CHECK(follower.AnnounceMessage().model_version() == 3);
  CHECK_FALSE(follower.Behind(2));

  // A server that cannot read the next delta: given up, asked again at the next look.
  publish(4, 3);
  REQUIRE(follower.Poll(now));
  follower.OnFailed(1, 4, "gone");
  CHECK_FALSE(follower.staging().has_value());
  REQUIRE(follower.Poll(now));
  follower.OnStaged(1, 4);
  follower.OnStaged(2, 4);
  CHECK(follower.MaybeAnnounce({1, 2}));
  // A server that joined later (a replacement) is neither waited for nor
  // lets its failure to stage give a delta up.
  follower.Exclude(3);
  publish(5, 4);
  REQUIRE(follower.Poll(now));
  follower.OnFailed(3, 5, "goes on from 4; this server has staged 0");
  CHECK(follower.staging().has_value());
  follower.OnStaged(1, 5);
  follower.OnStaged(2, 5);
  CHECK(follower.MaybeAnnounce({1, 2, 3}));
  CHECK(follower.announced() == 5);
  // A broken chain (the delta from 5 pruned) and no newer checkpoint: it
  // stays at 5.
  publish(7, 6);
  CHECK_FALSE(follower.Poll(now));
  CHECK(follower.announced() == 5);
  // Checkpoint 6 (which the job went on from): staged whole, then the
  // deltas from it.
  std::filesystem::create_directories(std::filesystem::path(CheckpointsDir(root.string())) / CheckpointName(6));
  REQUIRE(follower.Poll(now));
  const pb::Header whole = follower.StageMessage();
  CHECK(whole.checkpoint().version() == 6);
  CHECK(whole.checkpoint().delta_dir().empty());
  CHECK(std::filesystem::equivalent(whole.checkpoint().dir(),
                                    std::filesystem::path(CheckpointsDir(root.string())) / CheckpointName(6)));
  follower.OnStaged(1, 6);
  follower.OnStaged(2, 6);
  CHECK(follower.MaybeAnnounce({1, 2}));
  CHECK(follower.announced() == 6);
  REQUIRE(follower.Poll(now));
  CHECK(follower.StageMessage().checkpoint().version() == 7);
  CHECK(follower.StageMessage().checkpoint().base() == 6);
  CHECK_FALSE(follower.StageMessage().checkpoint().delta_dir().empty());
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace sparta::published_versions_test
