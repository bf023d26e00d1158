// Where published model versions live on disk (serving.publish_every).
//
//   <storage.path>/versions/delta-000008-from-000007/   version 8 as the
//       manifest.json                  rows changed since version 7
//       server-<rank>/table-<id>.<n>.sst   (pb::DeltaManifest; the parts:
//                                          server/delta_file.h)
//
// A delta is written into <name>.tmp and renamed once its manifest is
// complete, so a folder without ".tmp" is always whole. Its base is in its
// name, so a reader can chain versions (checkpoint c, then the deltas from
// c, from those, ...) from a directory listing alone.
// Stateless functions; thread-safe.
#ifndef SPARTA_COMMON_DELTA_FILES_H_
#define SPARTA_COMMON_DELTA_FILES_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sparta.pb.h"

namespace sparta {

std::string VersionsDir(const std::string& storage_path);
std::string DeltaName(uint64_t version, uint64_t base);
// A server's part of the delta in `delta_dir`.
std::string DeltaPartDir(const std::string& delta_dir, int rank);

// The part files of each table id in the delta `delta_dir`:
// <delta>/server-<rank>/table-<id>.<n>.sst, every server's.
std::map<uint32_t, std::vector<std::string>> DeltaFilesByTable(const std::string& delta_dir);

// One complete delta on disk.
struct DeltaRef {
  uint64_t version = 0;
  uint64_t base = 0;
  std::string dir;
};
// The complete deltas under `storage_path`, oldest first.
std::vector<DeltaRef> ListDeltas(const std::string& storage_path);

absl::Status WriteDeltaManifest(const std::string& delta_dir, const pb::DeltaManifest& manifest);
absl::StatusOr<pb::DeltaManifest> ReadDeltaManifest(const std::string& delta_dir);

// Renames `tmp_dir` (<versions>/<name>.tmp) to its final name.
absl::Status PublishDelta(const std::string& tmp_dir);

// Deletes the complete deltas of versions up to `version` (a checkpoint
// holds what they did) and every unfinished one but `keep_tmp`.
void PruneDeltas(const std::string& storage_path, uint64_t version, const std::string& keep_tmp = "");

}  // namespace sparta

#endif  // SPARTA_COMMON_DELTA_FILES_H_
