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
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sparta.pb.h"

namespace sparta {

std::string ServerStoreDir(const std::string& storage_path, int rank);
std::string CheckpointsDir(const std::string& storage_path);
std::string CheckpointName(uint64_t version);
// The RocksDB column family that holds table `id`'s rows (server/row_store.h).
std::string TableColumnName(uint32_t id);
// A server's part of the checkpoint in `checkpoint_dir`.
std::string CheckpointPartDir(const std::string& checkpoint_dir, int rank);

// The shards `holds` names, grouped by the server whose part of the
// checkpoint in `dir` saved them (its manifest's shard_owner): the part
// folders a reader opens, each for its shards. FailedPrecondition if the
// checkpoint has another number of shards than `num_shards`.
absl::StatusOr<std::map<uint32_t, std::vector<uint32_t>>> ShardsBySavingServer(
    const std::string& dir, const pb::CheckpointManifest& manifest, uint32_t num_shards,
    const std::function<bool(uint32_t shard)>& holds);

absl::Status WriteManifest(const std::string& checkpoint_dir, const pb::CheckpointManifest& manifest);
absl::StatusOr<pb::CheckpointManifest> ReadManifest(const std::string& checkpoint_dir);

// Versions of the complete checkpoints under `storage_path`, oldest first.
std::vector<uint64_t> ListCheckpoints(const std::string& storage_path);

// storage.restore ("latest" or a folder) -> the checkpoint folder to load.
// "latest" is what LATEST names; when LATEST is missing, empty, garbled or
// names no complete checkpoint, the newest complete checkpoint folder.
absl::StatusOr<std::string> ResolveRestore(const std::string& storage_path, const std::string& restore);

// storage.restore -> the checkpoint folders to try, best first: for
// "latest", the one ResolveRestore() picks and then every older complete
// one (a damaged checkpoint falls back to the previous); for a folder, just
// that folder.
absl::StatusOr<std::vector<std::string>> RestoreCandidates(const std::string& storage_path,
                                                           const std::string& restore);

// Renames `tmp_dir` to its final name, points LATEST at it and deletes all
// but the newest `keep` checkpoints (and stale .tmp folders).
absl::Status PublishCheckpoint(const std::string& storage_path, uint64_t version, int keep);

}  // namespace sparta

#endif  // SPARTA_COMMON_CHECKPOINT_FILES_H_
