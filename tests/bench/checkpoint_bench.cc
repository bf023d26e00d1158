// sparta-checkpoint-bench: what a checkpoint costs a server, measured on the
// server's own classes (TableShard rows, RowStore = RocksDB) in-process:
//   - the cut: writing every changed row, then a RocksDB checkpoint;
//   - its size on disk, and what a second checkpoint adds after 1% of the
//     rows changed (successive checkpoints share unchanged files);
//   - the restore: reading every shard back into fresh shards.
// Sparse rows of dim 8 with Adagrad state (64 bytes of row, 12 of key).
//   sparta-checkpoint-bench [--json FILE] ROWS...
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/hash.h"
#include "common/json.h"
#include "server/row_store.h"
#include "server/table_shard.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Bytes of the files under `dir`; with `skip`, files whose inode is in it
// (hard links shared with an earlier checkpoint) are not counted.
uint64_t DirBytes(const fs::path& dir, std::set<ino_t>* inodes, const std::set<ino_t>* skip = nullptr) {
  uint64_t bytes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    struct stat st;
    if (stat(entry.path().c_str(), &st) != 0) continue;
    if (inodes) inodes->insert(st.st_ino);
    if (skip && skip->count(st.st_ino)) continue;
    bytes += st.st_size;
  }
  return bytes;
}

struct Record {
  std::string name, unit;
  double value;
};

}  // namespace

int main(int argc, char** argv) {
  std::string json_out;
  std::vector<uint64_t> sizes;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) {
      json_out = argv[++i];
    } else {
      sizes.push_back(std::stoull(arg));
    }
  }
  if (sizes.empty()) sizes = {1000000};
  constexpr int kShardBits = 8;
  constexpr uint32_t kShards = 1u << kShardBits;
  sparta::pb::TableSpec spec;
  spec.set_id(0);
  spec.set_dim(8);
  // Random weights and one random gradient per row, so that rows do not
  // compress better on disk than trained ones would.
  spec.mutable_initializer()->set_type(sparta::pb::InitializerSpec::UNIFORM);
  spec.mutable_initializer()->set_scale(0.01f);
  sparta::pb::OptimizerSpec opt_spec;
  opt_spec.set_type(sparta::pb::OptimizerSpec::ADAGRAD);
  opt_spec.set_learning_rate(0.01f);
  auto optimizer = *sparta::Optimizer::Create(opt_spec);
  std::vector<Record> records;
  auto add = [&](const std::string& name, const std::string& unit, double value) {
    records.push_back({name, unit, value});
    std::printf("%-40s %14.3f %s\n", name.c_str(), value, unit.c_str());
    std::fflush(stdout);
  };

  for (uint64_t rows : sizes) {
    const fs::path dir = fs::temp_directory_path() / ("sparta-ckpt-bench-" + std::to_string(getpid()));
    fs::remove_all(dir);
    auto store = sparta::RowStore::Open((dir / "db").string(), /*wal=*/false, /*fresh=*/true);
    if (!store.ok() || !(*store)->AddTable(0).ok()) {
      std::fprintf(stderr, "checkpoint-bench: cannot open RocksDB in %s\n", dir.c_str());
      return 1;
    }
    std::vector<std::unique_ptr<sparta::TableShard>> shards;
    for (uint32_t s = 0; s < kShards; ++s) shards.push_back(std::make_unique<sparta::TableShard>(s, &spec, optimizer.get()));
    uint64_t created = 0;
    float grad[8];
    for (uint64_t i = 0; i < rows; ++i) {
      const uint64_t key = sparta::Mix64(i);
      for (int d = 0; d < 8; ++d) grad[d] = static_cast<float>(sparta::Mix64(key + d) % 2001) / 1000.0f - 1.0f;
      auto& shard = *shards[sparta::ShardOf(key, kShardBits)];
      shard.Apply(shard.FindOrCreate(key, &created, /*will_change=*/true), grad);
    }
    auto cut = [&](const fs::path& to) {
      sparta::RowBatch batch;
      for (auto& shard : shards) {
        shard->Persist((*store)->column(0), &batch);
        if (batch.count() >= 65536) (void)(*store)->Write(&batch);
      }
      (void)(*store)->Write(&batch);
      return (*store)->Checkpoint(to.string());
    };
    const std::string label = rows >= 1000000 ? std::to_string(rows / 1000000) + "M" : std::to_string(rows / 1000) + "k";
    auto start = Clock::now();
    if (auto st = cut(dir / "ckpt-1"); !st.ok()) {
      std::fprintf(stderr, "checkpoint-bench: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    add("checkpoint_" + label + "_rows_seconds", "s", Since(start));
    std::set<ino_t> first;
    const uint64_t bytes = DirBytes(dir / "ckpt-1", &first);
    add("checkpoint_" + label + "_rows_bytes_per_row", "bytes/row", double(bytes) / rows);

    // 1% of the rows change; the next checkpoint adds only new files.
    for (uint64_t i = 0; i < rows / 100; ++i) {
      const uint64_t key = sparta::Mix64(i * 97 % rows);
      shards[sparta::ShardOf(key, kShardBits)]->FindOrCreate(key, &created, /*will_change=*/true);
    }
    start = Clock::now();
    (void)cut(dir / "ckpt-2");
    add("checkpoint_" + label + "_rows_incremental_seconds", "s", Since(start));
    add("checkpoint_" + label + "_rows_incremental_mb", "MB", DirBytes(dir / "ckpt-2", nullptr, &first) / 1e6);

    // Restore: every shard read back into fresh shards.
    std::vector<std::unique_ptr<sparta::TableShard>> restored;
    for (uint32_t s = 0; s < kShards; ++s) {
      restored.push_back(std::make_unique<sparta::TableShard>(s, &spec, optimizer.get()));
    }
    std::vector<uint32_t> all(kShards);
    for (uint32_t s = 0; s < kShards; ++s) all[s] = s;
    start = Clock::now();
    uint64_t loaded = 0;
    auto st = sparta::RowStore::ReadShards((dir / "ckpt-2").string(), 0, all,
                                           [&](uint32_t shard, uint64_t key, std::span<const float> row) {
                                             restored[shard]->Load(key, row);
                                             ++loaded;
                                           });
    if (!st.ok() || loaded != rows) {
      std::fprintf(stderr, "checkpoint-bench: restore read %llu of %llu rows\n",
                   static_cast<unsigned long long>(loaded), static_cast<unsigned long long>(rows));
      return 1;
    }
    add("restore_" + label + "_rows_seconds", "s", Since(start));
    store->reset();
    fs::remove_all(dir);
  }
  if (!json_out.empty()) {
    std::ofstream out(json_out);
    out << "[\n";
    for (size_t i = 0; i < records.size(); ++i) {
      out << "  {\"name\": " << sparta::JsonQuote(records[i].name) << ", \"unit\": " << sparta::JsonQuote(records[i].unit)
          << ", \"value\": " << sparta::JsonNumber(records[i].value) << "}" << (i + 1 < records.size() ? ",\n" : "\n");
    }
    out << "]\n";
  }
  return 0;
}
