// RowStore: rows written through the write-ahead log are there when the
// database is opened again; a checkpoint is read back shard by shard, with
// exactly the rows of the shards asked for, bit for bit.
#include "server/row_store.h"

#include <unistd.h>

#include <filesystem>
#include <map>

#include <catch2/catch.hpp>

namespace sparta {
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
}  // namespace sparta
