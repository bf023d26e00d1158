#include "server/delta_file.h"

#include <cstring>
#include <vector>

#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>

#include "absl/strings/str_cat.h"
#include "server/row_store.h"

namespace sparta {
namespace {

absl::Status RocksStatus(const rocksdb::Status& st, const std::string& what) {
  if (st.ok()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", st.ToString()));
}

rocksdb::Options DeltaOptions() {
  rocksdb::Options options;
  // Written once, read once, soon after, on the same host or a shared
  // volume: the rows of floats compress poorly and compression would cost
  // the pause it is written in.
  options.compression = rocksdb::kNoCompression;
  return options;
}

}  // namespace

DeltaFileWriter::DeltaFileWriter(std::string path) : path_(std::move(path)) {}

DeltaFileWriter::~DeltaFileWriter() = default;

absl::Status DeltaFileWriter::Add(uint32_t shard, uint64_t key, const char* bytes, size_t size) {
  if (writer_ == nullptr) {
    writer_ = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(), DeltaOptions());
    if (auto st = RocksStatus(writer_->Open(path_), absl::StrCat("creating ", path_)); !st.ok()) return st;
  }
  ++rows_;
  return RocksStatus(writer_->Put(RowKey(shard, key), rocksdb::Slice(bytes, size)), absl::StrCat("writing ", path_));
}

absl::Status DeltaFileWriter::Put(uint32_t shard, uint64_t key, std::span<const float> weights) {
  return Add(shard, key, reinterpret_cast<const char*>(weights.data()), weights.size_bytes());
}

absl::Status DeltaFileWriter::Delete(uint32_t shard, uint64_t key) { return Add(shard, key, nullptr, 0); }

absl::Status DeltaFileWriter::Finish() {
  if (writer_ == nullptr) return absl::OkStatus();
  auto st = RocksStatus(writer_->Finish(), absl::StrCat("finishing ", path_));
  writer_.reset();
  return st;
}

absl::Status ReadDeltaFile(const std::string& path, const DeltaRowVisitor& visit) {
  rocksdb::SstFileReader reader(DeltaOptions());
  if (auto st = RocksStatus(reader.Open(path), absl::StrCat("opening ", path)); !st.ok()) return st;
  rocksdb::ReadOptions read;
  read.verify_checksums = true;
  read.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(reader.NewIterator(read));
  std::vector<float> weights;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    uint32_t shard = 0;
    uint64_t key = 0;
    const rocksdb::Slice k = it->key(), v = it->value();
    if (!ParseRowKey(std::string_view(k.data(), k.size()), &shard, &key) || v.size() % sizeof(float) != 0) {
      return absl::DataLossError(absl::StrCat(path, ": a row of ", k.size(), "-byte key and ", v.size(),
                                              "-byte value is not a delta's"));
    }
    // RocksDB's value slices are not aligned for floats.
    weights.resize(v.size() / sizeof(float));
    if (!v.empty()) std::memcpy(weights.data(), v.data(), v.size());
    visit(shard, key, weights);
  }
  return RocksStatus(it->status(), absl::StrCat("reading ", path));
}

absl::Status ReadDeltaFile(const DeltaFileRef& file, const DeltaRowVisitor& visit) {
  uint64_t rows = 0;
  auto st = ReadDeltaFile(file.path, [&](uint32_t shard, uint64_t key, std::span<const float> weights) {
    ++rows;
    visit(shard, key, weights);
  });
  if (st.ok() && rows != file.rows) {
    st = absl::DataLossError(
        absl::StrCat(file.path, " holds ", rows, " rows; its delta's manifest says ", file.rows));
  }
  return st;
}

}  // namespace sparta
