// Where checkpoints live on disk, and their manifests.
//
//   <storage.path>/server-<rank>/              a server's live RocksDB
//   <storage.path>/checkpoints/ckpt-000007/    one checkpoint:
//       manifest.json                          pb::CheckpointManifest (JSON)
//       server-<rank>/                         a RocksDB checkpoint per server
//   <storage.path>/checkpoints/LATEST          the newest complete one's name
//
// A checkpoint is written into ckpt-NNNNNN.tmp and renamed once its manifest
// is complete, so a folder without ".tmp" is always whole: a job killed while
// cutting leaves only a .tmp folder, which the next checkpoint removes.
// Stateless functions; thread-safe.
#ifndef SPARTA_COMMON_CHECKPOINT_FILES_H_
#define SPARTA_COMMON_CHECKPOINT_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sparta.pb.h"

namespace sparta {

std::string ServerStoreDir(const std::string& storage_path, int rank);
std::string CheckpointsDir(const std::string& storage_path);
std::string CheckpointName(uint64_t version);
// A server's part of the checkpoint in `checkpoint_dir`.
std::string CheckpointPartDir(const std::string& checkpoint_dir, int rank);

absl::Status WriteManifest(const std::string& checkpoint_dir, const pb::CheckpointManifest& manifest);
absl::StatusOr<pb::CheckpointManifest> ReadManifest(const std::string& checkpoint_dir);

// Versions of the complete checkpoints under `storage_path`, oldest first.
std::vector<uint64_t> ListCheckpoints(const std::string& storage_path);

// storage.restore ("latest" or a folder) -> the checkpoint folder to load.
absl::StatusOr<std::string> ResolveRestore(const std::string& storage_path, const std::string& restore);

// Renames `tmp_dir` to its final name, points LATEST at it and deletes all
// but the newest `keep` checkpoints (and stale .tmp folders).
absl::Status PublishCheckpoint(const std::string& storage_path, uint64_t version, int keep);

}  // namespace sparta

#endif  // SPARTA_COMMON_CHECKPOINT_FILES_H_
