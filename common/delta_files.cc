#include "common/delta_files.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/proto_json.h"

namespace sparta {

namespace fs = std::filesystem;

std::string VersionsDir(const std::string& storage_path) { return (fs::path(storage_path) / "versions").string(); }

std::string DeltaName(uint64_t version, uint64_t base) {
  return absl::StrFormat("delta-%06d-from-%06d", version, base);
}

std::string DeltaPartDir(const std::string& delta_dir, int rank) {
  return (fs::path(delta_dir) / absl::StrCat("server-", rank)).string();
}

std::vector<DeltaRef> ListDeltas(const std::string& storage_path) {
  std::vector<DeltaRef> deltas;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(VersionsDir(storage_path), ec)) {
    const std::string name = entry.path().filename().string();
    unsigned long long version = 0, base = 0;
    int end = 0;
    if (std::sscanf(name.c_str(), "delta-%llu-from-%llu%n", &version, &base, &end) == 2 &&
        end == static_cast<int>(name.size())) {
      deltas.push_back({version, base, entry.path().string()});
    }
  }
  std::sort(deltas.begin(), deltas.end(), [](const DeltaRef& a, const DeltaRef& b) { return a.version < b.version; });
  return deltas;
}

absl::Status WriteDeltaManifest(const std::string& delta_dir, const pb::DeltaManifest& manifest) {
  return WriteProtoJson((fs::path(delta_dir) / "manifest.json").string(), manifest);
}

absl::StatusOr<pb::DeltaManifest> ReadDeltaManifest(const std::string& delta_dir) {
  pb::DeltaManifest manifest;
  const absl::Status st = ReadProtoJson((fs::path(delta_dir) / "manifest.json").string(), &manifest);
  if (absl::IsNotFound(st)) {
    return absl::NotFoundError(absl::StrCat(delta_dir, ": no delta manifest (deleted while it was read?)"));
  }
  if (!st.ok()) return st;
  return manifest;
}

absl::Status PublishDelta(const std::string& tmp_dir) {
  const fs::path tmp(tmp_dir);
  if (tmp.extension() != ".tmp") return absl::InvalidArgumentError(absl::StrCat(tmp_dir, " is not a .tmp folder"));
  std::error_code ec;
  fs::rename(tmp, fs::path(tmp).replace_extension(), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("publishing ", tmp_dir, ": ", ec.message()));
  return absl::OkStatus();
}

void PruneDeltas(const std::string& storage_path, uint64_t version, const std::string& keep_tmp,
                 size_t keep_newest) {
  std::error_code ec;
  const std::vector<DeltaRef> deltas = ListDeltas(storage_path);  // oldest first
  const size_t prunable = deltas.size() > keep_newest ? deltas.size() - keep_newest : 0;
  for (size_t i = 0; i < prunable; ++i) {
    if (deltas[i].version <= version) fs::remove_all(deltas[i].dir, ec);
  }
  for (const auto& entry : fs::directory_iterator(VersionsDir(storage_path), ec)) {
    if (entry.path().extension() == ".tmp" && entry.path().string() != keep_tmp) fs::remove_all(entry.path(), ec);
  }
}

std::string DeltaFilePath(int rank, uint32_t table, int executor) {
  return absl::StrCat("server-", rank, "/table-", table, ".", executor, ".sst");
}

absl::StatusOr<std::map<uint32_t, std::vector<DeltaFileRef>>> DeltaFilesByTable(const std::string& delta_dir,
                                                                                const pb::DeltaManifest& manifest) {
  std::map<uint32_t, std::vector<DeltaFileRef>> files;
  uint64_t rows = 0;
  for (const pb::DeltaFile& file : manifest.files()) {
    const fs::path relative(file.path());
    const bool inside = !relative.empty() && relative.is_relative() &&
                        std::none_of(relative.begin(), relative.end(), [](const fs::path& p) { return p == ".."; });
    if (!inside) {
      return absl::DataLossError(
          absl::StrCat(delta_dir, ": the manifest names part file '", file.path(), "', outside the delta's folder"));
    }
    const fs::path path = fs::path(delta_dir) / relative;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return absl::NotFoundError(absl::StrCat(delta_dir, ": part file ", file.path(),
                                              " is missing (the delta was pruned while it was read?)"));
    }
    files[file.table()].push_back({path.string(), file.rows()});
    rows += file.rows();
  }
  if (rows != manifest.rows()) {
    return absl::DataLossError(absl::StrCat(delta_dir, ": the manifest counts ", manifest.rows(),
                                            " rows, and its part files ", rows));
  }
  return files;
}

}  // namespace sparta
