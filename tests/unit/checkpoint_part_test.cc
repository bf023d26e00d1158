// One server's side of a checkpoint without sockets, on real RocksDB files
// and running executors: two servers cut their parts, a third restores the
// whole table onto another number of executors and cuts it again, and
// every row comes back bit for bit; a checkpoint of another shard count and
// rows of the wrong width are refused with errors that say so; and rows
// saved without a TTL are stamped with the checkpoint's step when restored
// into a job with one.
#include "server/checkpoint_part.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include <catch2/catch.hpp>

#include "common/checkpoint_files.h"
#include "common/delta_files.h"
#include "server/delta_file.h"

namespace sparta::checkpoint_part_test {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kShards = 8;
constexpr uint32_t kDim = 4;
constexpr uint32_t kStride = 2 * kDim;  // weights, then Adagrad's sums
constexpr uint64_t kKeys = 3000;

pb::TableSpec Spec(uint32_t dim = kDim) {
  pb::TableSpec spec;
  spec.set_id(3);
  spec.set_name("emb");
  spec.set_dim(dim);
  spec.mutable_optimizer()->set_type(pb::OptimizerSpec::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(0.1f);
  return spec;
}

// `servers` servers; server s % servers leads shard s.
pb::ClusterView View(uint32_t servers) {
  pb::ClusterView v;
  v.set_epoch(1);
  for (uint32_t s = 0; s < kShards; ++s) {
    v.add_shard_owner(s % servers);
    v.add_replicas();
  }
  return v;
}

// A row no initializer would make: its bits say its key and column.
std::vector<float> RowOf(uint64_t key) {
  std::vector<float> row(kStride);
  for (uint32_t i = 0; i < kStride; ++i) row[i] = static_cast<float>(key) * 0.001f + static_cast<float>(i) + 0.5f;
  return row;
}

// One server: a RowStore, its tables and running executors.
struct Server {
  // `log_changes`: serving.publish_every (the executors log their writes).
  Server(const fs::path& dir, uint32_t rank, int threads, const pb::ClusterView& v, bool log_changes = false)
      : rank(rank), view(v), tables(&config) {
    auto opened = RowStore::Open(dir.string(), /*wal=*/false, /*fresh=*/true);
    REQUIRE(opened.ok());
    store = *std::move(opened);
    for (int e = 0; e < threads; ++e) {
      executors.push_back(std::make_unique<ShardExecutor>(
          e, threads, kShards, &done, ShardExecutor::Options{.store = store.get(), .log_changes = log_changes}));
    }
  }
  ~Server() {
    for (auto& e : executors) e->Stop();
  }
  // Loads every key of a shard this server leads; returns how many.
  uint64_t LoadOwnRows() {
    REQUIRE(tables.Create(Spec()).ok());
    REQUIRE(store->AddTable(3).ok());
    uint64_t n = 0;
    for (uint64_t key = 0; key < kKeys; ++key) {
      const uint32_t shard = view.shard_of(key);
      if (view.owner(shard) != rank) continue;
      executors[shard % executors.size()]->LoadRow(*tables.Find(3), shard, key, RowOf(key));
      ++n;
    }
    return n;
  }
  void Start() {
    for (auto& e : executors) e->Start();
  }

  const uint32_t rank;
  ShardView view;
  Config config;
  TableRegistry tables;
  std::unique_ptr<RowStore> store;
  Mailbox<std::shared_ptr<Request>> done;
  std::vector<std::unique_ptr<ShardExecutor>> executors;
};

struct Fixture {
  Fixture() : root(fs::temp_directory_path() / ("sparta-ckpt-part-" + std::to_string(getpid()))) {
    fs::remove_all(root);
    fs::create_directories(root);
  }
  ~Fixture() { fs::remove_all(root); }

  // The scheduler's manifest for parts cut under `v` by `servers` servers
  // (`spec`: the table as the manifest describes it).
  void WriteManifestFor(const std::string& dir, const pb::ClusterView& v, uint32_t servers, uint64_t rows,
                        const pb::TableSpec& spec = Spec()) {
    pb::CheckpointManifest m;
    m.set_version(1);
    m.set_servers(servers);
    m.set_workers(1);
    m.set_rows(rows);
    for (uint32_t owner : v.shard_owner()) m.add_shard_owner(owner);
    *m.add_tables() = spec;
    REQUIRE(WriteManifest(dir, m).ok());
  }

  // One server with every shard cuts checkpoint `name`; returns its folder.
  std::string CutOnOneServer(const char* name) {
    Server a(root / "a", 0, 1, View(1));
    a.LoadOwnRows();
    a.Start();
    const std::string dir = (root / name).string();
    REQUIRE(CutCheckpointPart(Request(dir), 0, a.store.get(), a.tables, a.executors, a.view).ok());
    return dir;
  }

  // The checkpoint's folder, which the scheduler makes before the cut.
  pb::CheckpointInfo Request(const std::string& dir) {
    fs::create_directories(dir);
    pb::CheckpointInfo r;
    r.set_version(1);
    r.set_dir(dir);
    return r;
  }

  fs::path root;
};

// Every row in the parts of `dir` (saved by `servers` servers), by key.
std::map<uint64_t, std::vector<float>> ReadAll(const std::string& dir, uint32_t servers) {
  std::map<uint64_t, std::vector<float>> rows;
  std::vector<uint32_t> all(kShards);
  for (uint32_t s = 0; s < kShards; ++s) all[s] = s;
  for (uint32_t rank = 0; rank < servers; ++rank) {
    REQUIRE(RowStore::ReadShards(CheckpointPartDir(dir, static_cast<int>(rank)), 3, all,
                                 [&](uint32_t, uint64_t key, std::span<const float> row) {
                                   CHECK(rows.count(key) == 0);
                                   rows[key].assign(row.begin(), row.end());
                                 })
                .ok());
  }
  return rows;
}

TEST_CASE("parts cut by two servers restore onto one with another executor count, bit for bit",
          "[checkpoint_part]") {
  Fixture f;
  const pb::ClusterView two = View(2);
  Server a(f.root / "a", 0, 2, two), b(f.root / "b", 1, 2, two);
  const uint64_t rows_a = a.LoadOwnRows(), rows_b = b.LoadOwnRows();
  REQUIRE(rows_a + rows_b == kKeys);
  REQUIRE(rows_a > 0);
  REQUIRE(rows_b > 0);
  a.Start();
  b.Start();
  const std::string first = (f.root / "ckpt-1").string();
  auto cut_a = CutCheckpointPart(f.Request(first), 0, a.store.get(), a.tables, a.executors, a.view);
  auto cut_b = CutCheckpointPart(f.Request(first), 1, b.store.get(), b.tables, b.executors, b.view);
  INFO(cut_a.status().message());
  REQUIRE(cut_a.ok());
  REQUIRE(cut_b.ok());
  CHECK(cut_a->rows() == rows_a);
  CHECK(cut_b->rows() == rows_b);
  REQUIRE(cut_a->tables_size() == 1);
  CHECK(cut_a->tables(0).name() == "emb");
  CHECK(cut_a->table_rows(0) == rows_a);
  f.WriteManifestFor(first, two, 2, kKeys);

  // One server with three executors holds every shard now.
  const pb::ClusterView one = View(1);
  Server c(f.root / "c", 0, 3, one);
  REQUIRE(RestoreCheckpointPart(first, c.view, 0, /*wal=*/false, /*step=*/0, &c.tables, c.store.get(), c.executors).ok());
  REQUIRE(c.tables.Find(3) != nullptr);
  c.Start();
  const std::string second = (f.root / "ckpt-2").string();
  auto cut_c = CutCheckpointPart(f.Request(second), 0, c.store.get(), c.tables, c.executors, c.view);
  REQUIRE(cut_c.ok());
  CHECK(cut_c->rows() == kKeys);

  const auto saved = ReadAll(first, 2);
  const auto again = ReadAll(second, 1);
  REQUIRE(saved.size() == kKeys);
  REQUIRE(again.size() == kKeys);
  for (uint64_t key = 0; key < kKeys; ++key) {
    const std::vector<float> want = RowOf(key);
    REQUIRE(again.at(key).size() == kStride);
    CHECK(std::memcmp(again.at(key).data(), want.data(), kStride * sizeof(float)) == 0);
    CHECK(std::memcmp(saved.at(key).data(), want.data(), kStride * sizeof(float)) == 0);
  }
}

TEST_CASE("a restore refuses another shard count and rows of another width, naming the checkpoint",
          "[checkpoint_part]") {
  Fixture f;
  const pb::ClusterView one = View(1);
  const std::string dir = f.CutOnOneServer("ckpt-1");

  SECTION("another shard count") {
    pb::ClusterView half = one;
    half.mutable_shard_owner()->Truncate(kShards / 2);
    f.WriteManifestFor(dir, half, 1, kKeys);
    Server c(f.root / "c", 0, 1, one);
    auto st = RestoreCheckpointPart(dir, c.view, 0, false, 0, &c.tables, c.store.get(), c.executors);
    CHECK(st.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(st.message()), Catch::Contains(dir) && Catch::Contains("4 shards"));
  }
  SECTION("rows of another width") {
    f.WriteManifestFor(dir, one, 1, kKeys, Spec(kDim + 2));  // the manifest says dim 6; the rows have 4
    Server c(f.root / "c", 0, 1, one);
    auto st = RestoreCheckpointPart(dir, c.view, 0, false, 0, &c.tables, c.store.get(), c.executors);
    CHECK(st.code() == absl::StatusCode::kDataLoss);
    CHECK_THAT(std::string(st.message()), Catch::Contains("has a row of 8 floats; expected 12"));
  }
}

TEST_CASE("rows saved without a TTL, restored into a job with one, count as updated at the checkpoint's step",
          "[checkpoint_part]") {
  Fixture f;
  const pb::ClusterView one = View(1);
  const std::string first = f.CutOnOneServer("ckpt-1");
  f.WriteManifestFor(first, one, 1, kKeys);

  Server c(f.root / "c", 0, 2, one);
  c.config.embedding.defaults.ttl = "1000 steps";
  // The workers had made 5000 steps: stamped 0, every row would be past
  // the TTL at the first push and expire.
  REQUIRE(RestoreCheckpointPart(first, c.view, 0, false, /*step=*/5000, &c.tables, c.store.get(), c.executors).ok());
  REQUIRE(c.tables.Find(3)->policy.ttl_steps == 1000);
  c.Start();
  const std::string second = (f.root / "ckpt-2").string();
  REQUIRE(CutCheckpointPart(f.Request(second), 0, c.store.get(), c.tables, c.executors, c.view).ok());
  const auto again = ReadAll(second, 1);
  REQUIRE(again.size() == kKeys);
  for (const auto& [key, record] : again) {
    REQUIRE(record.size() == kStride + 1);  // the row, then its stamp
    uint32_t stamp = 0;
    std::memcpy(&stamp, &record[kStride], sizeof(stamp));
    CHECK(stamp == 5000);
    CHECK(std::memcmp(record.data(), RowOf(key).data(), kStride * sizeof(float)) == 0);
  }
}

TEST_CASE("a cut without storage is refused", "[checkpoint_part]") {
  Config config;
  TableRegistry tables(&config);
  std::vector<std::unique_ptr<ShardExecutor>> none;
  pb::CheckpointInfo request;
  request.set_dir("/nonexistent");
  auto st = CutCheckpointPart(request, 0, nullptr, tables, none, ShardView());
  CHECK(st.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(st.status().message()), Catch::Contains("storage.path"));
}

}  // namespace
}  // namespace sparta::checkpoint_part_test

namespace sparta::checkpoint_part_test {
namespace {

// Every row in the delta parts of `dir`, by key: its weights, or empty
// (deleted). Read as a follower reads them: through the files the servers
// said they wrote (`cuts`), which must be every file in the folder.
std::map<uint64_t, std::vector<float>> ReadDelta(const std::string& dir, const std::vector<pb::CheckpointInfo>& cuts) {
  pb::DeltaManifest manifest;
  for (const pb::CheckpointInfo& cut : cuts) {
    for (const pb::DeltaFile& file : cut.delta_files()) *manifest.add_files() = file;
    manifest.set_rows(manifest.rows() + cut.delta_rows());
  }
  std::set<std::string> on_disk, named;
  for (const auto& file : fs::recursive_directory_iterator(dir)) {
    if (file.is_regular_file()) on_disk.insert(fs::relative(file.path(), dir).string());
  }
  for (const pb::DeltaFile& file : manifest.files()) named.insert(file.path());
  CHECK(named == on_disk);
  auto files = DeltaFilesByTable(dir, manifest);
  REQUIRE(files.ok());
  std::map<uint64_t, std::vector<float>> rows;
  for (const auto& [table, refs] : *files) {
    for (const DeltaFileRef& ref : refs) {
      REQUIRE(ReadDeltaFile(ref, [&](uint32_t, uint64_t key, std::span<const float> w) {
                CHECK(rows.count(key) == 0);  // one server leads each shard
                rows[key].assign(w.begin(), w.end());
              }).ok());
    }
  }
  return rows;
}

TEST_CASE("a published version holds the rows changed since its base, for the shards each server leads",
          "[checkpoint_part][publish]") {
  Fixture f;
  const pb::ClusterView two = View(2);
  Server a(f.root / "a", 0, 2, two, /*log_changes=*/true), b(f.root / "b", 1, 2, two, /*log_changes=*/true);
  a.LoadOwnRows();
  b.LoadOwnRows();
  a.Start();
  b.Start();
  auto publish = [&](uint64_t version, uint64_t base) {
    const std::string dir = (f.root / DeltaName(version, base)).string();
    pb::CheckpointInfo r;
    r.set_version(version);
    r.set_delta_dir(dir);
    r.set_base(base);
    r.set_publish_only(true);
    auto cut_a = CutCheckpointPart(r, 0, a.store.get(), a.tables, a.executors, a.view);
    auto cut_b = CutCheckpointPart(r, 1, b.store.get(), b.tables, b.executors, b.view);
    REQUIRE(cut_a.ok());
    REQUIRE(cut_b.ok());
    return std::pair(ReadDelta(dir, {*cut_a, *cut_b}), cut_a->delta_rows() + cut_b->delta_rows());
  };
  // New rows for `keys`, each set on the server (and executor) that leads it.
  auto change = [&](const std::vector<uint64_t>& keys, float by) {
    for (Server* s : {&a, &b}) {
      OnEveryExecutor(s->executors, [&](ShardExecutor& e) {
        for (uint64_t key : keys) {
          const uint32_t shard = s->view.shard_of(key);
          const bool here = shard % s->executors.size() == static_cast<uint32_t>(e.index());
          if (s->view.owner(shard) != s->rank || !here) continue;
          std::vector<float> row = RowOf(key);
          row[0] += by;
          e.LoadRow(*s->tables.Find(3), shard, key, row);
        }
      });
    }
  };

  // The first version goes on from the empty model: every row, weights only.
  auto [first, first_rows] = publish(1, 0);
  REQUIRE(first.size() == kKeys);
  CHECK(first_rows == kKeys);
  for (const auto& [key, w] : first) {
    REQUIRE(w.size() == kDim);
    CHECK(std::memcmp(w.data(), RowOf(key).data(), kDim * sizeof(float)) == 0);
  }
  // A version holds only what changed since its base.
  change({5, 17, 2999}, 1.0f);
  auto [second, second_rows] = publish(2, 1);
  CHECK(second_rows == 3);
  REQUIRE(second.size() == 3);
  CHECK(second.at(17)[0] == RowOf(17)[0] + 1.0f);
  // Version 3 is cut but never published (say another server failed it):
  // version 4 goes on from 2 and holds both intervals' changes.
  change({40}, 2.0f);
  publish(3, 2);
  change({41}, 3.0f);
  auto [fourth, fourth_rows] = publish(4, 2);
  CHECK(fourth_rows == 2);
  REQUIRE(fourth.size() == 2);
  CHECK(fourth.at(40)[0] == RowOf(40)[0] + 2.0f);
  CHECK(fourth.at(41)[0] == RowOf(41)[0] + 3.0f);
  // Once 4 is the base, nothing is left to publish.
  auto [fifth, fifth_rows] = publish(5, 4);
  CHECK(fifth.empty());
  CHECK(fifth_rows == 0);

  // A job restored from a checkpoint goes on from its version: the restored
  // rows are in no delta, what changes after them is.
  const std::string saved = (f.root / "ckpt-6").string();
  REQUIRE(CutCheckpointPart(f.Request(saved), 0, a.store.get(), a.tables, a.executors, a.view).ok());
  REQUIRE(CutCheckpointPart(f.Request(saved), 1, b.store.get(), b.tables, b.executors, b.view).ok());
  f.WriteManifestFor(saved, two, 2, kKeys);  // version 1
  Server restored(f.root / "r", 0, 2, View(1), /*log_changes=*/true);
  REQUIRE(RestoreCheckpointPart(saved, restored.view, 0, false, 0, &restored.tables, restored.store.get(),
                                restored.executors)
              .ok());
  restored.Start();
  pb::CheckpointInfo after;
  after.set_version(7);
  after.set_delta_dir((f.root / DeltaName(7, 1)).string());
  after.set_base(1);
  after.set_publish_only(true);
  auto cut = CutCheckpointPart(after, 0, restored.store.get(), restored.tables, restored.executors, restored.view);
  REQUIRE(cut.ok());
  CHECK(cut->delta_rows() == 0);

  // A server that does not log its writes refuses to publish.
  Server c(f.root / "c", 0, 1, View(1));
  c.LoadOwnRows();
  c.Start();
  pb::CheckpointInfo r;
  r.set_version(1);
  r.set_delta_dir((f.root / "never").string());
  r.set_publish_only(true);
  auto refused = CutCheckpointPart(r, 0, c.store.get(), c.tables, c.executors, c.view);
  CHECK(refused.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(refused.status().message()), Catch::Contains("serving.publish_every"));
}

}  // namespace
}  // namespace sparta::checkpoint_part_test
