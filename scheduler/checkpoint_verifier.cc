#include "scheduler/checkpoint_verifier.h"

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "common/rocks_log.h"
#include <rocksdb/db.h>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_files.h"

namespace sparta {
namespace {

absl::Status Damaged(const std::string& part, const rocksdb::Status& st) {
  // RocksDB's corruption messages name the table file and the offset.
  return absl::DataLossError(absl::StrCat(part, ": ", st.ToString()));
}

// Checksums every block of the part, then counts each table's rows.
absl::Status VerifyPart(const std::string& part, const std::map<uint32_t, uint64_t>& expected_rows) {
  if (!std::filesystem::is_directory(part)) return absl::DataLossError(absl::StrCat(part, ": missing"));
  rocksdb::Options options;
  options.info_log = SharedRocksLog();  // not a LOG file: see common/rocks_log.h
  options.paranoid_checks = true;
  std::vector<std::string> names;
  if (auto st = rocksdb::DB::ListColumnFamilies(options, part, &names); !st.ok()) return Damaged(part, st);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (auto st = rocksdb::DB::OpenForReadOnly(options, part, descriptors, &handles, &raw); !st.ok()) {
    return Damaged(part, st);
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  absl::Status result;
  if (auto st = db->VerifyChecksum(); !st.ok()) result = Damaged(part, st);
  for (const auto& [table, rows] : expected_rows) {
    if (!result.ok()) break;
    rocksdb::ColumnFamilyHandle* column = nullptr;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == TableColumnName(table)) column = handles[i];
    }
    uint64_t found = 0;
    if (column != nullptr) {
      rocksdb::ReadOptions read;
      read.fill_cache = false;
      read.verify_checksums = true;
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, column));
      for (it->SeekToFirst(); it->Valid(); it->Next()) ++found;
      if (!it->status().ok()) result = Damaged(part, it->status());
    }
    if (result.ok() && found != rows) {
      result = absl::DataLossError(absl::StrCat(part, ": table ", table, " has ", found,
                                                " rows; the manifest says it was saved with ", rows));
    }
  }
  for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
  return result;
}

}  // namespace

absl::Status VerifyCheckpoint(const std::string& checkpoint_dir, const pb::CheckpointManifest& manifest) {
  // Rows by part; a manifest written before parts were recorded lists the
  // shard owners only: their checksums are still verified.
  std::map<uint32_t, std::map<uint32_t, uint64_t>> parts;
  for (const pb::PartRows& p : manifest.parts()) parts[p.server()][p.table()] = p.rows();
  for (uint32_t owner : manifest.shard_owner()) parts[owner];
  for (const auto& [server, rows] : parts) {
    if (auto st = VerifyPart(CheckpointPartDir(checkpoint_dir, static_cast<int>(server)), rows); !st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace sparta
