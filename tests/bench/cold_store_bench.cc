// sparta-cold-store-bench: what a cold row costs the store that holds it,
// measured in-process on the same rows and the same access pattern, side by
// side, to show how far the cold tier's store is from the floor:
//   - RowStore opened as a server's cold tier (server/row_store.cc,
//     UseAsColdTier: RocksDB, skip-list memtables, universal compaction,
//     Bloom filters, 4 KiB blocks read without filling the cache), used as
//     ShardExecutor uses it: evicted rows written in batches sorted by
//     (shard, key), cold rows read back by MultiGet, a request's keys at once;
//   - the floor: ColdLog (server/cold_log.h), one append-only file of
//     fixed-size records (key, row) and a compact in-memory index from key
//     to record, each cold row read back by one pread, nothing merged.
// The rows are the README's tiering benchmark's: fm with dim 16 and Adagrad
// state (34 floats); each eviction batch is 4/5 keys never written before
// and 1/5 rows written before (rows that came back and went cold again), as
// in that benchmark's 10%-hot run (6.8M rows written for 5.8M keys).
// Reported: CPU seconds of the whole process (RocksDB's flush and
// compaction threads included, until they have nothing left to do) per row
// written and per row read, their ratio, and the DRAM each keeps per row on
// disk. Every row read is checked against the value last written.
//   sparta-cold-store-bench [--json FILE] [--rows N] [--quick]
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/hash.h"
#include "common/json.h"
#include "server/cold_log.h"
#include "server/row_store.h"

namespace {

namespace fs = std::filesystem;

constexpr uint32_t kFloats = 34;       // fm, dim 16: (16 + 1) weights + (16 + 1) Adagrad sums
constexpr uint32_t kShards = 256;      // virtual shards per table, as the default
constexpr size_t kEvictBatch = 2048;   // rows per eviction batch
constexpr size_t kRequestKeys = 576;   // cold keys per request (the tiering run: 1.2M reads in 2.1k batches)

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The virtual shard a key belongs to, as servers place it.
uint32_t ShardOf(uint64_t key) { return sparta::ShardOf(key, std::bit_width(kShards) - 1); }

// A benchmark that cannot do its work stops with the reason.
void Check(const absl::Status& status) {
  if (status.ok()) return;
  std::fprintf(stderr, "sparta-cold-store-bench: %s\n", std::string(status.message()).c_str());
  std::exit(1);
}

// The row a key has after its `version`-th write: a pure function of both,
// so every read can be checked.
void FillRow(uint64_t key, uint32_t version, float* row) {
  uint64_t h = sparta::Mix64(key ^ (uint64_t{version} << 40));
  for (uint32_t f = 0; f < kFloats; ++f) {
    h = sparta::Mix64(h + f);
    row[f] = static_cast<float>(static_cast<int64_t>(h >> 40) - (int64_t{1} << 23)) * 1e-6f;
  }
}

// The workload both stores see: which keys each eviction batch writes, and
// which keys each request reads back.
struct Workload {
  std::vector<std::vector<uint64_t>> batches;  // each sorted by (shard, key)
  std::vector<uint64_t> keys;                  // every key, in the order first written
  std::vector<std::vector<uint64_t>> requests;
};

Workload MakeWorkload(size_t rows, size_t reads) {
  Workload w;
  std::mt19937_64 rng(7);
  const size_t fresh_per_batch = kEvictBatch * 4 / 5;
  size_t written = 0;
  while (written < rows) {
    std::vector<uint64_t> batch;
    for (size_t i = 0; i < fresh_per_batch && written < rows; ++i, ++written) {
      const uint64_t key = rng();
      w.keys.push_back(key);
      batch.push_back(key);
    }
    // Rows written before (not twice in one batch: an executor evicts a
    // row once).
    const size_t known = w.keys.size() - batch.size();
    absl::flat_hash_map<uint64_t, bool> in_batch;
    for (uint64_t k : batch) in_batch[k] = true;
    for (size_t i = 0; known > 0 && i < kEvictBatch - fresh_per_batch; ++i) {
      const uint64_t key = w.keys[rng() % known];
      if (in_batch.emplace(key, true).second) batch.push_back(key);
    }
    std::sort(batch.begin(), batch.end(), [](uint64_t a, uint64_t b) {
      return std::make_pair(ShardOf(a), a) < std::make_pair(ShardOf(b), b);
    });
    w.batches.push_back(std::move(batch));
  }
  for (size_t r = 0; r < reads; r += kRequestKeys) {
    absl::flat_hash_map<uint64_t, bool> seen;
    std::vector<uint64_t> request;
    while (request.size() < std::min(kRequestKeys, reads - r)) {
      const uint64_t key = w.keys[rng() % w.keys.size()];
      if (seen.emplace(key, true).second) request.push_back(key);
    }
    w.requests.push_back(std::move(request));
  }
  return w;
}

struct Costs {
  double write_cpu_us = 0, read_cpu_us = 0;  // per row
  double dram_bytes_per_row = 0;             // kept in DRAM per row on disk
  double disk_bytes_per_row = 0;
  bool exact = true;
};

// Which version of each key a batch writes: replays the workload's order.
class Versions {
 public:
  explicit Versions(const Workload& w) {
    for (size_t i = 0; i < w.keys.size(); ++i) next_[w.keys[i]] = 0;
  }
  uint32_t Next(uint64_t key) { return next_[key]++; }
  uint32_t Last(uint64_t key) const { return next_.at(key) - 1; }

 private:
  absl::flat_hash_map<uint64_t, uint32_t> next_;
};

Costs MeasureRowStore(const Workload& w, const fs::path& dir, uint64_t tier_bytes) {
  Costs c;
  auto opened = sparta::RowStore::Open(dir.string(), /*wal=*/false, /*fresh=*/true, tier_bytes);
  Check(opened.status());
  std::unique_ptr<sparta::RowStore> store = *std::move(opened);
  Check(store->AddTable(1));
  rocksdb::ColumnFamilyHandle* column = store->column(1);
  Versions versions(w);
  std::vector<float> row(kFloats);
  size_t written = 0;
  double start = CpuSeconds();
  for (const auto& batch : w.batches) {
    sparta::RowBatch rows;
    for (uint64_t key : batch) {
      FillRow(key, versions.Next(key), row.data());
      rows.Put(column, ShardOf(key), key, row.data(), kFloats);
    }
    written += batch.size();
    Check(store->Write(&rows));
  }
  // Until RocksDB's flushes and merges have caught up: their CPU is part of
  // what a written row costs.
  while (store->BackgroundWorkPending()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  c.write_cpu_us = (CpuSeconds() - start) * 1e6 / static_cast<double>(written);

  std::vector<uint32_t> shards;
  std::vector<float> out;
  std::vector<uint8_t> found;
  size_t reads = 0;
  start = CpuSeconds();
  for (const auto& request : w.requests) {
    shards.resize(request.size());
    for (size_t i = 0; i < request.size(); ++i) shards[i] = ShardOf(request[i]);
    out.resize(request.size() * kFloats);
    Check(store->MultiGet(column, shards, request, kFloats, out.data(), &found));
    reads += request.size();
    for (size_t i = 0; i < request.size(); ++i) {
      FillRow(request[i], versions.Last(request[i]), row.data());
      c.exact &= found[i] && std::memcmp(row.data(), &out[i * kFloats], kFloats * sizeof(float)) == 0;
    }
  }
  c.read_cpu_us = (CpuSeconds() - start) * 1e6 / static_cast<double>(reads);
  c.dram_bytes_per_row = static_cast<double>(store->table_reader_bytes()) / static_cast<double>(w.keys.size());
  c.disk_bytes_per_row = static_cast<double>(store->GetSizes().sst_bytes) / static_cast<double>(w.keys.size());
  return c;
}

// The floor: server/cold_log.h, records appended to one file through a
// 1 MiB buffer and a compact index from key to record, one pread per row.
Costs MeasureColdLog(const Workload& w, const fs::path& dir) {
  Costs c;
  fs::create_directories(dir);
  auto created = sparta::ColdLog::Create((dir / "rows.log").string(), kFloats * sizeof(float));
  Check(created.status());
  std::unique_ptr<sparta::ColdLog> log = *std::move(created);
  Versions versions(w);
  std::vector<float> row(kFloats);
  size_t written = 0;
  double start = CpuSeconds();
  for (const auto& batch : w.batches) {
    for (uint64_t key : batch) {
      const uint32_t version = versions.Next(key);
      FillRow(key, version, row.data());
      // As an executor knows it: whether the store holds a row of the key.
      Check(log->Put(key, row.data(), version == 0 ? sparta::ColdLog::Known::kAbsent
                                                   : sparta::ColdLog::Known::kPresent));
    }
    written += batch.size();
  }
  Check(log->Flush());
  c.write_cpu_us = (CpuSeconds() - start) * 1e6 / static_cast<double>(written);
  std::vector<float> out(kFloats);
  size_t reads = 0;
  start = CpuSeconds();
  for (const auto& request : w.requests) {
    for (uint64_t key : request) {
      auto found = log->Get(key, out.data());
      Check(found.status());
      FillRow(key, versions.Last(key), row.data());
      c.exact &= *found && std::memcmp(row.data(), out.data(), kFloats * sizeof(float)) == 0;
    }
    reads += request.size();
  }
  c.read_cpu_us = (CpuSeconds() - start) * 1e6 / static_cast<double>(reads);
  c.dram_bytes_per_row = static_cast<double>(log->index_bytes()) / static_cast<double>(w.keys.size());
  c.disk_bytes_per_row = static_cast<double>(log->file_bytes()) / static_cast<double>(w.keys.size());
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_out;
  size_t rows = 4'000'000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) {
      json_out = argv[++i];
    } else if (arg == "--rows" && i + 1 < argc) {
      rows = std::stoull(argv[++i]);
    } else if (arg == "--quick") {
      rows = 200'000;
    } else {
      std::fprintf(stderr, "usage: sparta-cold-store-bench [--json FILE] [--rows N] [--quick]\n");
      return 2;
    }
  }
  const size_t reads = rows / 5;
  const Workload w = MakeWorkload(rows, reads);
  size_t written = 0;
  for (const auto& b : w.batches) written += b.size();
  const fs::path dir = fs::temp_directory_path() / ("sparta-cold-store-bench-" + std::to_string(getpid()));
  // RocksDB's share as a server gives it at 10% hot: an eighth of a limit
  // that holds a tenth of the table (sparta-ctl plan: ~200 bytes a row).
  const uint64_t tier_bytes = std::max<uint64_t>(4 << 20, w.keys.size() * 200 / 10 / 8);
  std::printf("%zu keys, %zu rows written in batches of %zu (1/5 rewrites), %zu rows read back in requests of %zu\n",
              w.keys.size(), written, kEvictBatch, reads, kRequestKeys);
  const Costs rocks = MeasureRowStore(w, dir / "rocksdb", tier_bytes);
  const Costs floor = MeasureColdLog(w, dir / "log");
  fs::remove_all(dir);
  std::printf("%-34s %12s %12s %14s %14s %s\n", "store", "write us/row", "read us/row", "DRAM B/row", "disk B/row",
              "reads exact");
  for (const auto& [name, c] : {std::pair<const char*, const Costs&>{"RowStore as the cold tier", rocks},
                                {"ColdLog: append-only log + index", floor}}) {
    std::printf("%-34s %12.2f %12.2f %14.2f %14.1f %s\n", name, c.write_cpu_us, c.read_cpu_us, c.dram_bytes_per_row,
                c.disk_bytes_per_row, c.exact ? "yes" : "NO");
  }
  std::printf("RowStore against the floor: writes %.1fx, reads %.1fx the CPU\n", rocks.write_cpu_us / floor.write_cpu_us,
              rocks.read_cpu_us / floor.read_cpu_us);
  if (!json_out.empty()) {
    std::ofstream out(json_out);
    out << "[\n";
    const std::vector<std::pair<std::string, double>> records = {
        {"cold_store_rowstore_write_cpu_us_per_row", rocks.write_cpu_us},
        {"cold_store_rowstore_read_cpu_us_per_row", rocks.read_cpu_us},
        {"cold_store_log_write_cpu_us_per_row", floor.write_cpu_us},
        {"cold_store_log_read_cpu_us_per_row", floor.read_cpu_us},
        {"cold_store_rowstore_vs_log_write_cpu", rocks.write_cpu_us / floor.write_cpu_us},
        {"cold_store_rowstore_vs_log_read_cpu", rocks.read_cpu_us / floor.read_cpu_us}};
    for (size_t i = 0; i < records.size(); ++i) {
      const bool ratio = records[i].first.find("_vs_") != std::string::npos;
      out << "  {\"name\": " << sparta::JsonQuote(records[i].first) << ", \"unit\": \""
          << (ratio ? "ratio" : "us/row") << "\", \"value\": " << sparta::JsonNumber(records[i].second) << "}"
          << (i + 1 < records.size() ? ",\n" : "\n");
    }
    out << "]\n";
  }
  return rocks.exact && floor.exact ? 0 : 1;
}
