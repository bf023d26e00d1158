// ColdLog: every key reads back the row it was last given, through index
// growth, buffered and flushed records, erasures (which move other keys'
// slots back), puts with and without what the caller knows of the key, and
// keys whose hashes share the index's 32 bits; checked against a std::map
// of the same operations.
#include "server/cold_log.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include <catch2/catch.hpp>

namespace sparta::cold_log_test {
namespace {

namespace fs = std::filesystem;

struct TempFile {
  TempFile() : path(fs::temp_directory_path() / ("sparta-coldlog-" + std::to_string(getpid()))) {}
  ~TempFile() { fs::remove(path); }
  fs::path path;
};

using Row = std::array<float, 5>;

Row RowOf(uint64_t key, uint32_t version) {
  Row r;
  for (size_t i = 0; i < r.size(); ++i) r[i] = static_cast<float>(key % 1000003) * 0.25f + version + 0.5f * i;
  return r;
}

// A hash whose top 32 bits take only 16 values: most keys share their tag
// with others, so every lookup has to tell them apart by the stored key.
uint64_t CollidingHash(uint64_t key) { return (key % 16) << 60 | (key & 0xffffffff); }

// `key` reads back its newest row, or nothing if `expected` has none.
void CheckRead(ColdLog& log, const std::map<uint64_t, uint32_t>& expected, uint64_t key) {
  Row got;
  auto found = log.Get(key, got.data());
  REQUIRE(found.ok());
  auto it = expected.find(key);
  REQUIRE(*found == (it != expected.end()));
  if (*found) REQUIRE(std::memcmp(got.data(), RowOf(key, it->second).data(), sizeof(Row)) == 0);
}

void RunAgainstMap(ColdLog::Hash hash, size_t operations) {
  TempFile file;
  auto log = ColdLog::Create(file.path.string(), sizeof(Row), hash);
  REQUIRE(log.ok());
  std::map<uint64_t, uint32_t> expected;  // key -> version of its newest row
  std::mt19937_64 rng(11);
  std::vector<uint64_t> keys;
  uint32_t version = 0;
  size_t peak = 0;  // the most keys the log held at once
  for (size_t op = 0; op < operations; ++op) {
    peak = std::max(peak, expected.size());
    const int what = static_cast<int>(rng() % 10);
    if (what < 5 || keys.empty()) {  // a new key
      const uint64_t key = rng();
      keys.push_back(key);
      const Row r = RowOf(key, ++version);
      REQUIRE((*log)->Put(key, r.data(), rng() % 2 ? ColdLog::Known::kAbsent : ColdLog::Known::kMaybe).ok());
      expected[key] = version;
    } else if (what < 7) {  // a new copy of a key written before (or erased)
      const uint64_t key = keys[rng() % keys.size()];
      const Row r = RowOf(key, ++version);
      // What an executor would know of the key, or nothing.
      const ColdLog::Known known = rng() % 2 ? ColdLog::Known::kMaybe
                                   : expected.count(key) ? ColdLog::Known::kPresent
                                                         : ColdLog::Known::kAbsent;
      REQUIRE((*log)->Put(key, r.data(), known).ok());
      expected[key] = version;
    } else if (what < 8) {
      const uint64_t key = keys[rng() % keys.size()];
      auto erased = (*log)->Erase(key);
      REQUIRE(erased.ok());
      CHECK(*erased == (expected.erase(key) == 1));
    } else {
      CheckRead(**log, expected, rng() % 3 == 0 ? rng() : keys[rng() % keys.size()]);
    }
    if (op % 5000 == 4999) REQUIRE((*log)->Flush().ok());
  }
  // Every key, at the end: all of them in one pass over the index.
  CHECK((*log)->keys() == expected.size());
  for (uint64_t key : keys) CheckRead(**log, expected, key);
  CHECK((*log)->records() == (*log)->keys() + (*log)->dead_records());
  CHECK((*log)->file_bytes() == (*log)->records() * (sizeof(Row) + sizeof(uint64_t)));
  // Each of its 64 parts was more than 7/8 full when it grew last, by a
  // quarter: 8-byte slots for at most 10/7 of the keys it held, or the 16
  // a part starts with. (Keys only grow here but for a few erasures, so the
  // parts' peaks come at about the same time as the log's.)
  INFO("index " << (*log)->index_bytes() << " bytes for at most " << peak << " keys");
  CHECK((*log)->index_bytes() <= 8 * ((peak + 64) * 10 / 7 + 64 * 18));
  // One pass over the file gives each key once, with its newest row.
  std::map<uint64_t, uint32_t> visited;
  REQUIRE((*log)->ForEachLive([&](uint64_t key, const char* row) {
                  auto it = expected.find(key);
                  REQUIRE(it != expected.end());
                  REQUIRE(std::memcmp(row, RowOf(key, it->second).data(), sizeof(Row)) == 0);
                  CHECK(visited.emplace(key, it->second).second);
                  return absl::OkStatus();
                }).ok());
  CHECK(visited == expected);
  // Cleared, it holds nothing and takes new rows.
  REQUIRE((*log)->Clear().ok());
  CHECK((*log)->keys() == 0);
  CHECK((*log)->file_bytes() == 0);
  CHECK(fs::file_size(file.path) == 0);
  const std::map<uint64_t, uint32_t> none;
  for (size_t i = 0; i < keys.size(); i += 7) CheckRead(**log, none, keys[i]);
  const Row r = RowOf(keys[0], 1);
  REQUIRE((*log)->Put(keys[0], r.data(), ColdLog::Known::kAbsent).ok());
  CheckRead(**log, {{keys[0], 1}}, keys[0]);
}

TEST_CASE("ColdLog reads back each key's newest row", "[cold_log]") { RunAgainstMap(nullptr, 60000); }

TEST_CASE("ColdLog tells keys apart whose hashes share the index's bits", "[cold_log]") {
  RunAgainstMap(CollidingHash, 3000);
}

TEST_CASE("ColdLog moves its oldest rows out a batch at a time and keeps the rest", "[cold_log]") {
  TempFile file;
  auto made = ColdLog::Create(file.path.string(), sizeof(Row));
  REQUIRE(made.ok());
  ColdLog& log = **made;
  std::map<uint64_t, uint32_t> expected;  // key -> version of its newest row
  std::map<uint64_t, uint32_t> moved;     // what the moves handed over, as the other store keeps it
  uint32_t version = 0;
  auto put = [&](uint64_t key) {
    const Row r = RowOf(key, ++version);
    REQUIRE(log.Put(key, r.data()).ok());
    expected[key] = version;
  };
  for (uint64_t key = 0; key < 30000; ++key) put(key);
  for (uint64_t key = 0; key < 30000; key += 3) put(key);  // newer copies: the old ones are garbage
  const size_t index_before = log.index_bytes();
  std::vector<std::pair<uint64_t, uint32_t>> batch;
  auto visit = [&](uint64_t key, const char* row) {
    // Only a key's newest copy is handed over.
    REQUIRE(std::memcmp(row, RowOf(key, expected.at(key)).data(), sizeof(Row)) == 0);
    batch.emplace_back(key, expected.at(key));
    return absl::OkStatus();
  };
  auto commit = [&] {
    for (const auto& [key, v] : batch) moved[key] = v;
    batch.clear();
    return absl::OkStatus();
  };
  // A failed commit forgets nothing.
  auto failed = log.MoveOldest(5000, visit, [&] {
    batch.clear();
    return absl::UnavailableError("the other store is down");
  });
  CHECK_FALSE(failed.ok());
  CHECK(log.keys() == 30000);
  // The oldest records go, with new rows coming in between.
  uint64_t next = 100000;
  while (log.unmoved() > 12000) {
    auto passed = log.MoveOldest(5000, visit, commit);
    REQUIRE(passed.ok());
    CHECK(*passed == 5000);
    for (int i = 0; i < 300; ++i) put(next++);
  }
  // Every key reads its newest row from the log, or the log has none and
  // the newest row was handed over.
  for (const auto& [key, v] : expected) {
    Row got;
    auto found = log.Get(key, got.data());
    REQUIRE(found.ok());
    if (*found) {
      REQUIRE(std::memcmp(got.data(), RowOf(key, v).data(), sizeof(Row)) == 0);
    } else {
      REQUIRE(moved.count(key) == 1);
      REQUIRE(moved.at(key) == v);
    }
  }
  CHECK(log.keys() + moved.size() == expected.size());
  CHECK(log.file_bytes() == log.unmoved() * (sizeof(Row) + sizeof(uint64_t)));
  // The parts shrank with their keys: each at least 7/20 full (or as
  // small as a part starts).
  INFO("index " << index_before << " bytes before, " << log.index_bytes() << " after, for " << log.keys() << " keys");
  CHECK(log.index_bytes() < index_before);
  CHECK(log.index_bytes() <= 8 * (log.keys() * 20 / 7 + 64 * 17));
  // Moving everything empties it.
  while (log.unmoved() > 0) REQUIRE(log.MoveOldest(5000, visit, commit).ok());
  CHECK(log.keys() == 0);
  CHECK(fs::file_size(file.path) == 0);
  CHECK(moved.size() == expected.size());
  for (const auto& [key, v] : expected) REQUIRE(moved.at(key) == v);
}

TEST_CASE("ColdLog reports a record it cannot read", "[cold_log]") {
  TempFile file;
  auto log = ColdLog::Create(file.path.string(), sizeof(Row));
  REQUIRE(log.ok());
  const Row r = RowOf(7, 1);
  REQUIRE((*log)->Put(7, r.data()).ok());
  REQUIRE((*log)->Flush().ok());
  fs::resize_file(file.path, 4);  // the record is gone from under the index
  Row got;
  auto found = (*log)->Get(7, got.data());
  REQUIRE_FALSE(found.ok());
  CHECK(found.status().code() == absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace sparta::cold_log_test
