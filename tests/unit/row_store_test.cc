// RowStore: rows written through the write-ahead log are there when the
// database is opened again; a checkpoint is read back shard by shard, with
// exactly the rows of the shards asked for, bit for bit.
#include "server/row_store.h"

#include <unistd.h>

#include <filesystem>
#include <map>

#include <catch2/catch.hpp>

namespace sparta::row_store_test {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  TempDir() : path(fs::temp_directory_path() / ("sparta-rowstore-" + std::to_string(getpid()))) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

std::vector<float> RowOf(uint64_t key) {
  return {static_cast<float>(key) * 0.5f, -1.0f / static_cast<float>(key + 1), 3.25f};
}

TEST_CASE("RowStore keeps logged rows across a reopen and reads checkpoints by shard", "[row_store]") {
  TempDir tmp;
  const std::string db = (tmp.path / "db").string();
  std::map<std::pair<uint32_t, uint64_t>, std::vector<float>> written;
  {
    auto store = RowStore::Open(db, /*wal=*/true, /*fresh=*/true);
    REQUIRE(store.ok());
    REQUIRE((*store)->AddTable(7).ok());
    RowBatch batch;
    for (uint64_t key = 1; key <= 300; ++key) {
      const uint32_t shard = key % 5;
      const auto row = RowOf(key);
      batch.Put((*store)->column(7), shard, key, row.data(), 3);
      written[{shard, key}] = row;
    }
    REQUIRE((*store)->Write(&batch).ok());
    REQUIRE(batch.count() == 0);
  }
  auto reopened = RowStore::Open(db, /*wal=*/true, /*fresh=*/false);
  REQUIRE(reopened.ok());
  REQUIRE((*reopened)->column(7) != nullptr);
  const std::string checkpoint = (tmp.path / "ckpt").string();
  REQUIRE((*reopened)->Checkpoint(checkpoint).ok());

  std::map<std::pair<uint32_t, uint64_t>, std::vector<float>> read;
  REQUIRE(RowStore::ReadShards(checkpoint, 7, {1, 3},
                               [&](uint32_t shard, uint64_t key, std::span<const float> row) {
                                 read[{shard, key}] = std::vector<float>(row.begin(), row.end());
                               })
              .ok());
  size_t expected = 0;
  for (const auto& [where, row] : written) {
    if (where.first != 1 && where.first != 3) continue;
    ++expected;
    REQUIRE(read.count(where) == 1);
    CHECK(read[where] == row);
  }
  CHECK(read.size() == expected);
  // A table the checkpoint does not have has no rows, not an error.
  size_t none = 0;
  CHECK(RowStore::ReadShards(checkpoint, 8, {1}, [&](uint32_t, uint64_t, std::span<const float>) { ++none; }).ok());
  CHECK(none == 0);
}

}  // namespace
}  // namespace sparta::row_store_test

namespace sparta::row_store_test {
namespace {

TEST_CASE("a damaged block in a checkpoint is an error, also when later shards read fine", "[row_store]") {
  TempDir tmp;
  const std::string db = (tmp.path / "db").string(), checkpoint = (tmp.path / "ckpt").string();
  {
    auto store = RowStore::Open(db, /*wal=*/false, /*fresh=*/true);
    REQUIRE(store.ok());
    REQUIRE((*store)->AddTable(0).ok());
    RowBatch batch;
    std::vector<float> row(64, 1.0f);
    // Three shards of many rows each, so that every shard spans many blocks.
    for (uint32_t shard = 0; shard < 3; ++shard) {
      for (uint64_t key = 0; key < 4000; ++key) batch.Put((*store)->column(0), shard, key, row.data(), 64);
    }
    REQUIRE((*store)->Write(&batch).ok());
    REQUIRE((*store)->Checkpoint(checkpoint).ok());
  }
  fs::path sst;
  for (const auto& entry : fs::directory_iterator(checkpoint)) {
    if (entry.path().extension() == ".sst" && (sst.empty() || fs::file_size(entry) > fs::file_size(sst))) {
      sst = entry.path();
    }
  }
  REQUIRE(!sst.empty());
  {
    // Inside the first shard's rows; a checkpoint's files are hard links to
    // the database's, which does not matter here.
    FILE* f = std::fopen(sst.c_str(), "r+b");
    REQUIRE(f != nullptr);
    std::fseek(f, static_cast<long>(fs::file_size(sst) / 6), SEEK_SET);
    const std::vector<char> junk(64, '\x5a');
    std::fwrite(junk.data(), 1, junk.size(), f);
    std::fclose(f);
  }
  size_t rows = 0;
  const absl::Status st =
      RowStore::ReadShards(checkpoint, 0, {0, 1, 2}, [&](uint32_t, uint64_t, std::span<const float>) { ++rows; });
  CHECK_FALSE(st.ok());
  CHECK(rows < 3 * 4000);
  CHECK_THAT(std::string(st.message()), Catch::Contains("Corruption"));
}

}  // namespace
}  // namespace sparta::row_store_test
