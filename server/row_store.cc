#include "server/row_store.h"

#include <cstring>
#include <filesystem>

#include "common/rocks_log.h"
#include <rocksdb/listener.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>
#include <rocksdb/utilities/checkpoint.h>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_files.h"
#include "common/logging.h"
#include "common/status_macros.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace sparta {
namespace {

std::string ColumnName(uint32_t id) { return TableColumnName(id); }

void EncodeRowKey(uint32_t shard, uint64_t key, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(shard >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<char>(key >> (56 - 8 * i));
}

uint64_t DecodeBigEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

absl::Status FromRocks(const rocksdb::Status& st, const std::string& what) {
  if (st.ok()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", st.ToString()));
}

// ThreadSanitizer cannot see how RocksDB orders a write's memtable entries
// before the flush and the reads that copy them out: the library is not
// instrumented, and those copies run in libstdc++'s string code, so neither
// stack of such a report names RocksDB for tsan.supp to match once the
// writer's history has been overwritten (seen with evicted rows written by
// the cold-tier thread). Under TSan only, these state the order RocksDB
// guarantees: what a Write() returned from happens before a flush that
// begins, or a read that starts, after it. Elsewhere they compile to nothing.
#if defined(__SANITIZE_THREAD__)
char rocks_writes;  // the address TSan orders on; never read
void WritesPublished() { __tsan_release(&rocks_writes); }
void WritesSeen() { __tsan_acquire(&rocks_writes); }
#else
void WritesPublished() {}
void WritesSeen() {}
#endif

class FlushAfterWrites : public rocksdb::EventListener {
 public:
  void OnFlushBegin(rocksdb::DB*, const rocksdb::FlushJobInfo&) override { WritesSeen(); }
};

// RocksDB's own recovery from a full disk waits, in a background thread,
// for free space of a whole write buffer (64 MB here) and meanwhile refuses
// Resume() as busy. Recovery is Sparta's call instead: the next checkpoint
// resumes the database (RowStore::ResumeAfterFailure()) and fails again,
// with the error, while the disk is still full.
class ManualRecovery : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status, bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

// Keeps `bytes` equal to what RocksDB's open table files hold in memory
// (indexes and Bloom filters), which changes only when files come and go.
class TableReaderMeter : public rocksdb::EventListener {
 public:
  explicit TableReaderMeter(std::shared_ptr<std::atomic<uint64_t>> bytes) : bytes_(std::move(bytes)) {}
  void OnFlushCompleted(rocksdb::DB* db, const rocksdb::FlushJobInfo&) override { Measure(db); }
  void OnCompactionCompleted(rocksdb::DB* db, const rocksdb::CompactionJobInfo&) override { Measure(db); }

  void Measure(rocksdb::DB* db) {
    uint64_t v = 0;
    if (db->GetAggregatedIntProperty(rocksdb::DB::Properties::kEstimateTableReadersMem, &v)) {
      bytes_->store(v, std::memory_order_relaxed);
    }
  }

 private:
  std::shared_ptr<std::atomic<uint64_t>> bytes_;
};

rocksdb::Options StoreOptions() {
  rocksdb::Options options;
  options.listeners.push_back(std::make_shared<ManualRecovery>());
  options.listeners.push_back(std::make_shared<FlushAfterWrites>());
  options.info_log = SharedRocksLog();  // not a LOG file: see common/rocks_log.h
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  // Rows are random 12-byte keys with values of tens to hundreds of bytes,
  // written in large batches: a bigger memtable means fewer, larger flushes.
  options.write_buffer_size = 64 << 20;
  options.max_background_jobs = 2;
  // Rows are floats with random low bits: compression saves almost nothing
  // (measured: 83 bytes/row on disk for 76 bytes of row and key) and costs
  // most of a checkpoint's time.
  options.compression = rocksdb::kNoCompression;
  // The live database is written, and read only by scans of whole shards
  // (checkpoints flush it first, restores read checkpoints, new replicas
  // get a shard at a time, see PrepareScan()): a vector memtable appends in
  // O(1) and sorts once at flush, where the default skip list spent most of
  // a "wal" push's time searching (perf: FindSpliceForLevel + key compares).
  options.memtable_factory = std::make_shared<rocksdb::VectorRepFactory>();
  options.allow_concurrent_memtable_write = false;
  return options;
}

// The cold tier reads rows back at random: a skip-list memtable (the
// vector one is scanned on every read), whole-key Bloom filters (a key that
// is not in a file costs no block read), and memtables that, charged to a
// cache of `bytes`, hold RocksDB's memory to that share.
//
// The tier is written far more than it is read back: every key of a long
// tail is written once when it goes cold and most are never read again
// (29.5M rows written, 8.1M read back in the README's 10% run). So the
// store is tuned for writes. Tiered ("universal") compaction merges runs of
// similar size only when many have piled up: each row is rewritten about
// log_32(table / memtable) times, where leveled compaction, whose every
// level-0 file spans the whole key range of random keys, rewrote the next
// level with each merge (perf: a third of a tiered run's CPU, with writes
// stalled at 40 level-0 files). The price is on reads, which probe a Bloom
// filter per sorted run: up to about 32 per level of merging, a few
// hundred nanoseconds a key.
void UseAsColdTier(rocksdb::Options* options, uint64_t bytes, std::shared_ptr<std::atomic<uint64_t>> meter) {
  auto cache = rocksdb::NewLRUCache(bytes);
  options->memtable_factory = std::make_shared<rocksdb::SkipListFactory>();
  // One writer inserts each write group: its skip list then keeps the last
  // insert position, so an eviction's sorted batch costs a few compares a
  // row (concurrent inserts search from the top every time; perf showed
  // that search as a fifth of a tiered run).
  options->allow_concurrent_memtable_write = false;
  // Cold reads do not fill the cache (RowStore::MultiGet: random rows of a
  // tier many times the cache's size hit it about 1% of the time, and
  // filling it cost more than it saved), so nearly all of the share goes to
  // memtables: larger ones mean fewer, larger runs to merge and to probe.
  // Up to three of a third each (one filling while two flush).
  options->write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(bytes / 8 * 7, cache);
  options->write_buffer_size = std::max<uint64_t>(1 << 20, bytes / 8 * 7 / 3);
  options->max_write_buffer_number = 3;
  options->compaction_style = rocksdb::kCompactionStyleUniversal;
  options->level0_file_num_compaction_trigger = 32;
  // Rows are mostly new keys, so the runs hold little garbage: no whole-
  // table rewrites to bound space amplification (the default rewrote the
  // tier each time it doubled). Overwritten rows are dropped as their runs
  // merge.
  options->compaction_options_universal.max_size_amplification_percent = 100000;
  // A slowed write stalls the executor that evicts: only when merging has
  // fallen far behind.
  options->level0_slowdown_writes_trigger = 4 * 32;
  options->level0_stop_writes_trigger = 8 * 32;
  options->listeners.push_back(std::make_shared<TableReaderMeter>(meter));
  // A Bloom filter over each memtable's keys too: most lookups are of keys
  // that are not there, and without it each one searched the skip list.
  options->memtable_whole_key_filtering = true;
  options->memtable_prefix_bloom_size_ratio = 0.05;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Filters and indexes stay with their open files, outside the cache: in
  // it, the data blocks of a cold tier far larger than the cache pushed
  // them out, and every lookup read a whole filter back (perf: half the
  // time). They cost about 1.3 bytes per row, counted in the overhead.
  // Their memory grows with the rows on disk, so it is charged to the
  // hot-row budget as RocksDB reports it (RowStore::table_reader_bytes()).
  table.cache_index_and_filter_blocks = false;
  // Small blocks: every lookup of a cold row reads (and checksums) a whole
  // block for one row of ~100-200 bytes; 16 KiB blocks made the copy from
  // the page cache alone a tenth of a tiered run. The index costs about
  // 0.6 bytes a row at this size.
  table.block_size = 4 << 10;
  options->table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Rows are read one by one: no readahead of neighbours that are not wanted.
  options->advise_random_on_open = true;
}

}  // namespace

std::string RowKey(uint32_t shard, uint64_t key) {
  std::string out(12, '\0');
  EncodeRowKey(shard, key, out.data());
  return out;
}

bool ParseRowKey(std::string_view bytes, uint32_t* shard, uint64_t* key) {
  if (bytes.size() != 12) return false;
  *shard = static_cast<uint32_t>(DecodeBigEndian(bytes.data(), 4));
  *key = DecodeBigEndian(bytes.data() + 4, 8);
  return true;
}

void RowBatch::Put(rocksdb::ColumnFamilyHandle* column, uint32_t shard, uint64_t key, const float* row,
                   uint32_t floats, const uint32_t* stamp) {
  EncodeRowKey(shard, key, key_);
  const rocksdb::Slice key_slice(key_, sizeof(key_));
  const rocksdb::Slice parts[2] = {rocksdb::Slice(reinterpret_cast<const char*>(row), floats * sizeof(float)),
                                   rocksdb::Slice(reinterpret_cast<const char*>(stamp), sizeof(uint32_t))};
  batch_.Put(column, rocksdb::SliceParts(&key_slice, 1), rocksdb::SliceParts(parts, stamp != nullptr ? 2 : 1));
  if (log_ != nullptr) log_->Add(column->GetID(), shard, key);
}

void RowBatch::Delete(rocksdb::ColumnFamilyHandle* column, uint32_t shard, uint64_t key) {
  EncodeRowKey(shard, key, key_);
  batch_.Delete(column, rocksdb::Slice(key_, sizeof(key_)));
  if (log_ != nullptr) log_->Add(column->GetID(), shard, key);
}

void RowBatch::DeleteShard(rocksdb::ColumnFamilyHandle* column, uint32_t shard) {
  char begin[12], end[12];
  EncodeRowKey(shard, 0, begin);
  EncodeRowKey(shard + 1, 0, end);  // shards are < 2^20: no overflow
  batch_.DeleteRange(column, rocksdb::Slice(begin, sizeof(begin)), rocksdb::Slice(end, sizeof(end)));
  if (log_ != nullptr) log_->AddReplaced(shard);
}

absl::StatusOr<std::unique_ptr<RowStore>> RowStore::Open(const std::string& dir, bool wal, bool fresh,
                                                         uint64_t cold_tier_bytes) {
  rocksdb::Options options = StoreOptions();
  auto reader_bytes = std::make_shared<std::atomic<uint64_t>>(0);
  if (cold_tier_bytes > 0) UseAsColdTier(&options, cold_tier_bytes, reader_bytes);
  if (fresh) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::create_directories(dir);
  std::vector<std::string> names;
  if (!rocksdb::DB::ListColumnFamilies(options, dir, &names).ok()) names = {rocksdb::kDefaultColumnFamilyName};
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions(options));
  auto store = std::unique_ptr<RowStore>(new RowStore());
  store->options_ = options;
  store->cold_tier_ = cold_tier_bytes > 0;
  store->wal_ = wal;
  store->dir_ = dir;
  rocksdb::DB* db = nullptr;
  if (auto st = FromRocks(rocksdb::DB::Open(options, dir, descriptors, &store->handles_, &db),
                          absl::StrCat("opening RocksDB in ", dir));
      !st.ok()) {
    return st;
  }
  store->db_.reset(db);
  store->table_reader_bytes_ = reader_bytes;
  TableReaderMeter(reader_bytes).Measure(db);  // the files it opened with
  for (size_t i = 0; i < names.size(); ++i) {
    uint32_t id = 0;
    if (std::sscanf(names[i].c_str(), "table-%u", &id) == 1 && id < kMaxTables) store->columns_[id] = store->handles_[i];
  }
  return store;
}

RowStore::~RowStore() {
  for (auto* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
}

absl::Status RowStore::AddTable(uint32_t id) {
  if (id >= kMaxTables) return absl::InvalidArgumentError(absl::StrCat("table id ", id, " out of range"));
  if (columns_[id] != nullptr) return absl::OkStatus();
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  if (auto st = FromRocks(db_->CreateColumnFamily(rocksdb::ColumnFamilyOptions(options_), ColumnName(id),
                                                  &handle),
                          "creating a column family");
      !st.ok()) {
    return st;
  }
  handles_.push_back(handle);
  columns_[id] = handle;
  return absl::OkStatus();
}

absl::Status RowStore::Write(RowBatch* batch) { return Write(batch->batch()); }

absl::Status RowStore::Write(rocksdb::WriteBatch* batch) {
  if (batch->Count() == 0) return absl::OkStatus();
  if (wal_failed_.load(std::memory_order_acquire)) {
    batch->Clear();
    return wal_error();
  }
  rocksdb::WriteOptions options;
  // Without the log a crash loses what was not yet flushed, which is the
  // contract of durability "checkpoint": only checkpoints count.
  options.disableWAL = !wal_;
  const rocksdb::Status rocks = db_->Write(options, batch);
  WritesPublished();
  batch->Clear();
  if (rocks.ok()) return absl::OkStatus();
  absl::Status st = absl::DataLossError(absl::StrCat("writing rows to ", dir_, ": ", rocks.ToString()));
  if (wal_) {
    std::lock_guard<std::mutex> lock(wal_error_mu_);
    if (!wal_failed_.load()) {
      wal_error_ = st;
      wal_failed_.store(true, std::memory_order_release);
      spdlog::error("the write-ahead log failed; this server logs no more updates: {}", st.message());
    }
    return wal_error_;
  }
  needs_resume_.store(true);
  return st;
}

absl::Status RowStore::MultiGet(rocksdb::ColumnFamilyHandle* column, std::span<const uint32_t> shards,
                               std::span<const uint64_t> keys, uint32_t floats, float* rows,
                               std::vector<uint8_t>* found) {
  const size_t n = keys.size();
  found->assign(n, 0);
  if (n == 0) return absl::OkStatus();
  std::vector<char> key_bytes(n * 12);
  std::vector<rocksdb::Slice> slices(n);
  for (size_t i = 0; i < n; ++i) {
    EncodeRowKey(shards[i], keys[i], key_bytes.data() + i * 12);
    slices[i] = rocksdb::Slice(key_bytes.data() + i * 12, 12);
  }
  // In chunks: a found value pins its whole block in the cache until it is
  // released, so one MultiGet of a request's 50k keys held ~50k blocks
  // (hundreds of MB, past the cache's capacity) at once.
  constexpr size_t kChunk = 128;
  std::vector<rocksdb::PinnableSlice> values(std::min(n, kChunk));
  std::vector<rocksdb::Status> statuses(values.size());
  rocksdb::ReadOptions read;
  // See UseAsColdTier(): the blocks of random cold rows are seldom read twice.
  read.fill_cache = false;
  WritesSeen();
  for (size_t begin = 0; begin < n; begin += kChunk) {
    const size_t count = std::min(kChunk, n - begin);
    db_->MultiGet(read, column, count, slices.data() + begin, values.data(), statuses.data());
    for (size_t c = 0; c < count; ++c) {
      const size_t i = begin + c;
      if (statuses[c].IsNotFound()) continue;
      if (!statuses[c].ok()) return FromRocks(statuses[c], absl::StrCat("reading a cold row from ", dir_));
      if (values[c].size() != floats * sizeof(float)) {
        return absl::DataLossError(absl::StrCat(dir_, ": a cold row of ", values[c].size(), " bytes; expected ",
                                                floats * sizeof(float)));
      }
      std::memcpy(rows + i * floats, values[c].data(), values[c].size());
      (*found)[i] = 1;
    }
    for (size_t c = 0; c < count; ++c) values[c].Reset();
  }
  return absl::OkStatus();
}

absl::Status RowStore::ForEachRow(rocksdb::ColumnFamilyHandle* column, uint32_t shard,
                                 const std::function<void(uint64_t key, std::span<const float> row)>& visit) {
  return ForEachRow(column, shard, nullptr, [&](uint64_t key, std::span<const float> row) {
    visit(key, row);
    return true;
  });
}

absl::Status RowStore::ForEachRow(rocksdb::ColumnFamilyHandle* column, uint32_t shard,
                                 const rocksdb::Snapshot* snapshot,
                                 const std::function<bool(uint64_t key, std::span<const float> row)>& visit) {
  rocksdb::ReadOptions read;
  read.fill_cache = false;  // one pass over the shard: keep the cache for hot lookups
  read.snapshot = snapshot;
  const std::string begin = RowKey(shard, 0);
  const std::string end = shard == ~uint32_t{0} ? std::string(13, '\xff') : RowKey(shard + 1, 0);
  rocksdb::Slice upper(end);
  read.iterate_upper_bound = &upper;
  WritesSeen();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, column));
  std::vector<float> row;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key(), value = it->value();
    if (key.size() != 12 || value.size() % sizeof(float) != 0) {
      return absl::DataLossError(absl::StrCat(dir_, ": a malformed row in shard ", shard));
    }
    row.resize(value.size() / sizeof(float));
    std::memcpy(row.data(), value.data(), value.size());
    if (!visit(DecodeBigEndian(key.data() + 4, 8), row)) return absl::OkStatus();
  }
  return FromRocks(it->status(), absl::StrCat("reading shard ", shard, " from ", dir_));
}

absl::Status RowStore::PrepareScan(rocksdb::ColumnFamilyHandle* column) {
  if (cold_tier_) return absl::OkStatus();  // a skip list: iterators read it in place
  uint64_t entries = 0;
  if (!db_->GetIntProperty(column, rocksdb::DB::Properties::kNumEntriesActiveMemTable, &entries) ||
      entries <= kMaxUnsortedEntries) {
    return absl::OkStatus();
  }
  rocksdb::FlushOptions flush;
  flush.wait = true;
  return FromRocks(db_->Flush(flush, column), absl::StrCat("flushing ", dir_, " before a scan"));
}

std::shared_ptr<const rocksdb::Snapshot> RowStore::TakeSnapshot() {
  rocksdb::DB* db = db_.get();
  return std::shared_ptr<const rocksdb::Snapshot>(db->GetSnapshot(),
                                                  [db](const rocksdb::Snapshot* s) { db->ReleaseSnapshot(s); });
}

absl::Status RowStore::wal_error() const {
  std::lock_guard<std::mutex> lock(wal_error_mu_);
  return wal_error_;
}

void RowStore::ResumeAfterFailure() {
  if (!needs_resume_.exchange(false)) return;
  // A write or a flush failed (e.g. the disk was full) and RocksDB stopped
  // taking writes: if space was freed since, it takes them again.
  if (auto st = db_->Resume(); !st.ok()) spdlog::warn("RocksDB in {} did not resume: {}", dir_, st.ToString());
}

absl::Status RowStore::Checkpoint(const std::string& dir) {
  needs_resume_.store(true);  // until it has succeeded
  rocksdb::FlushOptions flush;
  flush.wait = true;
  if (auto st = FromRocks(db_->Flush(flush, handles_), absl::StrCat("flushing ", dir_, " before a checkpoint"));
      !st.ok()) {
    return st;
  }
  rocksdb::Checkpoint* raw = nullptr;
  if (auto st = FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "checkpoint"); !st.ok()) return st;
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  SPARTA_RETURN_IF_ERROR(FromRocks(checkpoint->CreateCheckpoint(dir), absl::StrCat("creating checkpoint ", dir)));
  needs_resume_.store(false);
  return absl::OkStatus();
}

absl::Status RowStore::ReadShards(const std::string& dir, uint32_t id, const std::vector<uint32_t>& shards,
                                  const RowVisitor& visit) {
  rocksdb::Options options;
  options.info_log = SharedRocksLog();  // not a LOG file: see common/rocks_log.h
  std::vector<std::string> names;
  if (auto st = FromRocks(rocksdb::DB::ListColumnFamilies(options, dir, &names), absl::StrCat("reading ", dir));
      !st.ok()) {
    return st;
  }
  if (std::find(names.begin(), names.end(), ColumnName(id)) == names.end()) return absl::OkStatus();  // no rows
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (auto st = FromRocks(rocksdb::DB::OpenForReadOnly(options, dir, descriptors, &handles, &raw),
                          absl::StrCat("opening ", dir));
      !st.ok()) {
    return st;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::ColumnFamilyHandle* column = nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == ColumnName(id)) column = handles[i];
  }
  absl::Status result;
  {
    rocksdb::ReadOptions read;
    read.fill_cache = false;  // one sequential pass
    read.verify_checksums = true;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, column));
    for (uint32_t shard : shards) {
      for (it->Seek(RowKey(shard, 0)); it->Valid(); it->Next()) {
        const rocksdb::Slice key = it->key(), value = it->value();
        if (key.size() != 12 || DecodeBigEndian(key.data(), 4) != shard) break;
        if (value.size() % sizeof(float) != 0) {
          result = absl::DataLossError(absl::StrCat(dir, ": a row of table ", id, " has ", value.size(), " bytes"));
          break;
        }
        // RocksDB's value slices are not aligned for floats.
        std::vector<float> row(value.size() / sizeof(float));
        std::memcpy(row.data(), value.data(), value.size());
        visit(shard, DecodeBigEndian(key.data() + 4, 8), row);
      }
      // Checked per shard: the next Seek() would clear a read error
      // (a corrupt block ends the loop like the end of the data does).
      if (result.ok() && !it->status().ok()) result = FromRocks(it->status(), absl::StrCat("reading ", dir));
      if (!result.ok()) break;
    }
  }
  for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
  return result;
}

bool RowStore::BackgroundWorkPending() const {
  for (const char* property : {"rocksdb.num-running-flushes", "rocksdb.num-running-compactions"}) {
    uint64_t v = 0;
    if (db_->GetIntProperty(property, &v) && v > 0) return true;
  }
  for (auto* handle : handles_) {
    for (const char* property : {"rocksdb.mem-table-flush-pending", "rocksdb.compaction-pending"}) {
      uint64_t v = 0;
      if (db_->GetIntProperty(handle, property, &v) && v > 0) return true;
    }
  }
  return false;
}

RowStore::Sizes RowStore::GetSizes() const {
  Sizes sizes;
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(handle, rocksdb::DB::Properties::kLiveSstFilesSize, &v)) sizes.sst_bytes += v;
    if (db_->GetIntProperty(handle, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) sizes.memtable_bytes += v;
  }
  uint64_t wal = 0;
  if (db_->GetIntProperty("rocksdb.total-wal-size", &wal)) {
    sizes.wal_bytes = wal;
  }
  return sizes;
}

}  // namespace sparta
