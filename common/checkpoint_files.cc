#include "common/checkpoint_files.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>


#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/printable.h"
#include "common/proto_json.h"

namespace sparta {

namespace fs = std::filesystem;

std::string ServerStoreDir(const std::string& storage_path, int rank) {
  return (fs::path(storage_path) / absl::StrCat("server-", rank)).string();
}

std::string CheckpointsDir(const std::string& storage_path) {
  return (fs::path(storage_path) / "checkpoints").string();
}

std::string CheckpointName(uint64_t version) { return absl::StrFormat("ckpt-%06d", version); }

std::string TableColumnName(uint32_t id) { return absl::StrCat("table-", id); }

std::string CheckpointPartDir(const std::string& checkpoint_dir, int rank) {
  return (fs::path(checkpoint_dir) / absl::StrCat("server-", rank)).string();
}

absl::Status WriteManifest(const std::string& checkpoint_dir, const pb::CheckpointManifest& manifest) {
  return WriteProtoJson((fs::path(checkpoint_dir) / "manifest.json").string(), manifest);
}

absl::StatusOr<pb::CheckpointManifest> ReadManifest(const std::string& checkpoint_dir) {
  pb::CheckpointManifest manifest;
  const absl::Status st = ReadProtoJson((fs::path(checkpoint_dir) / "manifest.json").string(), &manifest);
  if (absl::IsNotFound(st)) {
    return absl::NotFoundError(absl::StrCat((fs::path(checkpoint_dir) / "manifest.json").string(),
                                            ": no checkpoint manifest"));
  }
  if (!st.ok()) return st;
  return manifest;
}

absl::StatusOr<std::map<uint32_t, std::vector<uint32_t>>> ShardsBySavingServer(
    const std::string& dir, const pb::CheckpointManifest& manifest, uint32_t num_shards,
    const std::function<bool(uint32_t shard)>& holds) {
  if (manifest.shard_owner_size() != static_cast<int>(num_shards)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " has ", manifest.shard_owner_size(),
                                                      " shards; cluster.num_shards is ", num_shards));
  }
  std::map<uint32_t, std::vector<uint32_t>> by_source;
  for (uint32_t s = 0; s < num_shards; ++s) {
    if (holds(s)) by_source[manifest.shard_owner(static_cast<int>(s))].push_back(s);
  }
  return by_source;
}

std::vector<uint64_t> ListCheckpoints(const std::string& storage_path) {
  std::vector<uint64_t> versions;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(CheckpointsDir(storage_path), ec)) {
    const std::string name = entry.path().filename().string();
    unsigned long long v = 0;
    char rest = 0;
    if (std::sscanf(name.c_str(), "ckpt-%llu%c", &v, &rest) == 1) versions.push_back(v);
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

absl::StatusOr<std::vector<std::string>> RestoreCandidates(const std::string& storage_path,
                                                           const std::string& restore) {
  if (restore != "latest") {
    if (!fs::exists(fs::path(restore) / "manifest.json")) {
      return absl::NotFoundError(absl::StrCat("storage.restore: '", restore, "' is not a checkpoint folder"));
    }
    return std::vector<std::string>{restore};
  }
  const fs::path root = CheckpointsDir(storage_path);
  std::vector<std::string> candidates;
  std::ifstream in(root / "LATEST");
  std::string name;
  if (in >> name && name.find('/') == std::string::npos && fs::exists(root / name / "manifest.json")) {
    candidates.push_back((root / name).string());
  } else if (fs::exists(root / "LATEST")) {
    spdlog::warn("{} is empty or names no complete checkpoint ('{}'); using the newest complete one",
                 (root / "LATEST").string(), Printable(name));
  }
  const std::vector<uint64_t> versions = ListCheckpoints(storage_path);
  for (auto v = versions.rbegin(); v != versions.rend(); ++v) {
    const std::string dir = (root / CheckpointName(*v)).string();
    if (!fs::exists(fs::path(dir) / "manifest.json")) continue;
    if (std::find(candidates.begin(), candidates.end(), dir) == candidates.end()) candidates.push_back(dir);
  }
  if (candidates.empty()) {
    return absl::NotFoundError(absl::StrCat("storage.restore=latest: no checkpoint under ", root.string()));
  }
  return candidates;
}

absl::StatusOr<std::string> ResolveRestore(const std::string& storage_path, const std::string& restore) {
  auto candidates = RestoreCandidates(storage_path, restore);
  if (!candidates.ok()) return candidates.status();
  return candidates->front();
}

absl::Status PublishCheckpoint(const std::string& storage_path, uint64_t version, int keep) {
  const fs::path root = CheckpointsDir(storage_path);
  const fs::path final_dir = root / CheckpointName(version);
  std::error_code ec;
  fs::rename(root / (CheckpointName(version) + ".tmp"), final_dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("publishing ", final_dir.string(), ": ", ec.message()));
  {
    std::ofstream latest(root / "LATEST.tmp");
    latest << CheckpointName(version) << "\n";
  }
  fs::rename(root / "LATEST.tmp", root / "LATEST", ec);
  if (ec) return absl::UnavailableError(absl::StrCat("updating LATEST: ", ec.message()));
  const std::vector<uint64_t> versions = ListCheckpoints(storage_path);
  for (size_t i = 0; i + keep < versions.size(); ++i) fs::remove_all(root / CheckpointName(versions[i]), ec);
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.path().extension() == ".tmp") fs::remove_all(entry.path(), ec);
  }
  return absl::OkStatus();
}

}  // namespace sparta
