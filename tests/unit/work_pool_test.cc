// WorkPool: input cut into units handed out on demand. The units of every
// epoch read every line once (with the real readers), a dead worker's units
// come back whole and first, and a checkpoint's progress restores exactly
// the lines the job had still to train.
#include "scheduler/work_pool.h"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "worker/data/readers.h"
#include "worker/data/split_reader.h"

namespace sparta::work_pool_test {
namespace {

namespace fs = std::filesystem;

// Three libsvm files of lines "1 ID:1" padded to random lengths (the last
// without its final newline); IDs 0..ids-1 in order (600 by default).
struct Inputs {
  fs::path dir;
  std::vector<WorkPool::InputFile> files;
  int ids = 0;
  explicit Inputs(int lines_per_file = 200) {
    char tmpl[] = "/tmp/sparta-work-XXXXXX";
    dir = mkdtemp(tmpl);
    std::mt19937 rng(5);
    for (int f = 0; f < 3; ++f) {
      std::string text;
      for (int i = 0; i < lines_per_file; ++i) {
        text += "1 " + std::to_string(ids++) + ":1" + std::string(rng() % 40, ' ') + "\n";
      }
      if (f == 2) text.pop_back();
      const fs::path path = dir / ("part" + std::to_string(f));
      std::ofstream(path) << text;
      files.push_back({path.string(), text.size()});
    }
  }
  ~Inputs() { fs::remove_all(dir); }
};

// Reads `range` as a worker does, stopping after `limit` lines; adds the
// IDs read to `seen` and returns the bytes read (a line boundary).
uint64_t ReadUnit(const FileRange& range, std::map<int, int>* seen, int limit = -1) {
  SplitReader reader({range}, NewLibsvmReader(), 0);
  uint64_t read = 0;
  int lines = 0;
  REQUIRE(reader
              .ReadPass([&](const Example& ex, uint64_t bytes_done) {
                if (lines == limit) return false;
                ++(*seen)[static_cast<int>(ex.features[0].key)];
                ++lines;
                read = bytes_done;
                return true;
              })
              .ok());
  return lines == limit ? read : range.end - range.begin;
}

TEST_CASE("every epoch's units read every line once, whatever the split size", "[work_pool]") {
  // 80 lines a file: each unit opens its file, and at 37 bytes a unit 600
  // lines took 30 s under TSan (1-byte units took 14 minutes).
  Inputs in(80);
  // 37 bytes: shorter than most lines, so most units cut lines and many own
  // none.
  for (uint64_t split : {0, 37, 1000, 1 << 20}) {
    INFO("split_size " << split);
    auto pool = WorkPool::Cut(in.files, split, 2);
    REQUIRE(pool.ok());
    std::map<int, int> seen;
    uint32_t last_epoch = 0;
    for (;;) {
      const WorkPool::Next next = pool->Take(0);
      if (next.outcome == WorkPool::Outcome::kFinished) break;
      REQUIRE(next.outcome == WorkPool::Outcome::kAssigned);
      REQUIRE(next.unit.epoch >= last_epoch);
      last_epoch = next.unit.epoch;
      if (split > 0) REQUIRE(next.unit.range.end - next.unit.range.begin <= split);
      ReadUnit(next.unit.range, &seen);
      REQUIRE(pool->Done(0, next.unit.id));
    }
    REQUIRE(seen.size() == static_cast<size_t>(in.ids));
    for (const auto& [id, count] : seen) REQUIRE(count == 2);
    REQUIRE(pool->finished());
  }
}

TEST_CASE("a dead worker's units go back whole and are handed out first", "[work_pool]") {
  Inputs in;
  auto pool = WorkPool::Cut(in.files, 1000, 1);
  REQUIRE(pool.ok());
  const WorkPool::Unit a = pool->Take(1).unit, b = pool->Take(1).unit, c = pool->Take(2).unit;
  REQUIRE(a.id < b.id);
  const std::vector<WorkPool::Unit> released = pool->Release(1);
  REQUIRE(released.size() == 2);
  CHECK(released[0].id == a.id);
  CHECK_FALSE(pool->Done(1, a.id));  // a report from before the release changes nothing
  const WorkPool::Unit again = pool->Take(2).unit;
  CHECK(again.id == a.id);
  CHECK(again.range.begin == a.range.begin);
  CHECK(again.range.end == a.range.end);
  CHECK(pool->Take(3).unit.id == b.id);
  CHECK_FALSE(pool->Done(3, c.id));  // not worker 3's
  // Everything handed out: another worker waits while units are in flight.
  std::vector<std::pair<uint32_t, uint64_t>> held = {{2, c.id}, {2, a.id}, {3, b.id}};
  for (WorkPool::Next next = pool->Take(4); next.outcome == WorkPool::Outcome::kAssigned; next = pool->Take(4)) {
    held.emplace_back(4, next.unit.id);
  }
  CHECK(pool->Take(5).outcome == WorkPool::Outcome::kWait);
  for (const auto& [worker, id] : held) REQUIRE(pool->Done(worker, id));
  CHECK(pool->Take(5).outcome == WorkPool::Outcome::kFinished);
}

TEST_CASE("a checkpoint's progress restores exactly the lines still to train, on any number of workers",
          "[work_pool]") {
  Inputs in;
  for (int workers_after : {1, 2, 4}) {
    INFO(workers_after << " workers after the restore");
    auto pool = WorkPool::Cut(in.files, 700, 2);
    REQUIRE(pool.ok());
    std::map<int, int> trained;
    // Three workers: two whole units done, then worker 0 is 5 lines into a
    // unit, worker 1 holds one it has not started, worker 2 is 11 lines in.
    for (int i = 0; i < 2; ++i) {
      const WorkPool::Unit u = pool->Take(0).unit;
      ReadUnit(u.range, &trained);
      REQUIRE(pool->Done(0, u.id));
    }
    const WorkPool::Unit u0 = pool->Take(0).unit, u1 = pool->Take(1).unit, u2 = pool->Take(2).unit;
    std::map<uint64_t, uint64_t> read = {{u0.id, ReadUnit(u0.range, &trained, 5)}, {u1.id, 0},
                                         {u2.id, ReadUnit(u2.range, &trained, 11)}};
    const pb::WorkProgress progress = pool->Progress([&](uint64_t id) { return read.at(id); });

    WorkPool restored = WorkPool::Restore(progress);
    std::map<int, int> rest;
    for (int w = 0;; w = (w + 1) % workers_after) {
      const WorkPool::Next next = restored.Take(w);
      if (next.outcome == WorkPool::Outcome::kFinished) break;
      ReadUnit(next.unit.range, &rest);
      REQUIRE(restored.Done(w, next.unit.id));
    }
    for (int id = 0; id < 600; ++id) {
      INFO("line " << id);
      REQUIRE(trained[id] + rest[id] == 2);
    }
  }
}

TEST_CASE("a followed pool waits for input, takes each file in once, and a restore takes in only new ones",
          "[work_pool]") {
  Inputs in;
  WorkPool pool;
  pool.set_following(true);
  CHECK(pool.Take(0).outcome == WorkPool::Outcome::kWait);  // nothing yet: wait, do not finish
  CHECK_FALSE(pool.finished());
  // part0 arrives; seen again (the next look), it is not taken in twice.
  CHECK(pool.AddArrived({in.files[0]}, 700).size() == 1);
  CHECK(pool.AddArrived({in.files[0]}, 700).empty());
  std::map<int, int> trained;
  for (;;) {
    const WorkPool::Next next = pool.Take(0);
    if (next.outcome != WorkPool::Outcome::kAssigned) {
      CHECK(next.outcome == WorkPool::Outcome::kWait);
      break;
    }
    CHECK(next.unit.epoch == 0);
    ReadUnit(next.unit.range, &trained);
    REQUIRE(pool.Done(0, next.unit.id));
  }
  CHECK_FALSE(pool.finished());
  // part1 arrives, and a worker is 7 lines into its first unit at a cut.
  CHECK(pool.AddArrived({in.files[0], in.files[1]}, 700).size() == 1);
  const WorkPool::Unit u = pool.Take(0).unit;
  const uint64_t read = ReadUnit(u.range, &trained, 7);
  const pb::WorkProgress progress = pool.Progress([&](uint64_t) { return read; });
  CHECK(progress.files_seen_size() == 2);

  // The scheduler state keeps it all.
  pb::WorkPoolState state;
  pool.ToState(&state);
  WorkPool again = WorkPool::FromState(state);
  CHECK(again.following());
  CHECK(again.AddArrived({in.files[1]}, 700).empty());

  // Restored (and following again): part0 and part1 are not taken in anew;
  // part2, which arrived while the job was down, is.
  WorkPool restored = WorkPool::Restore(progress);
  restored.set_following(true);
  CHECK(restored.AddArrived({in.files[0], in.files[1], in.files[2]}, 700).size() == 1);
  for (;;) {
    const WorkPool::Next next = restored.Take(0);
    if (next.outcome != WorkPool::Outcome::kAssigned) break;
    ReadUnit(next.unit.range, &trained);
    REQUIRE(restored.Done(0, next.unit.id));
  }
  for (int id = 0; id < 600; ++id) {
    INFO("line " << id);
    REQUIRE(trained[id] == 1);
  }
  // Not following, an empty pool is finished.
  restored.set_following(false);
  CHECK(restored.finished());
  CHECK(restored.Take(0).outcome == WorkPool::Outcome::kFinished);
}

}  // namespace
}  // namespace sparta::work_pool_test
