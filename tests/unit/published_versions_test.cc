// The parts of published model versions (serving.publish_every) that need
// no sockets: an executor's ChangeLog keeps a failed cut's changes for the
// next one and forgets what a published base holds; PlanVersions takes a
// follower to the newest version by the cheapest start; and a delta file
// reads back what was written, deletions included.
#include <unistd.h>

#include <filesystem>

#include <catch2/catch.hpp>

#include "server/change_log.h"
#include "server/delta_file.h"
#include "worker/serving/version_plan.h"

namespace sparta {
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

DeltaRef Delta(uint64_t version, uint64_t base) { return {version, base, "d" + std::to_string(version)}; }

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
}  // namespace sparta
