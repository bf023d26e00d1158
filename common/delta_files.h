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

// Where executor `executor` of server `rank` writes table `table`'s rows
// in a delta, relative to the delta's folder:
// server-<rank>/table-<id>.<executor>.sst.
std::string DeltaFilePath(int rank, uint32_t table, int executor);

// A part file to read, and the rows (and deletions) it must hold.
struct DeltaFileRef {
  std::string path;
  uint64_t rows = 0;
};
// The part files of each table id in the delta `delta_dir`, every
// server's, exactly as its `manifest` names them. The folder listing is
// never trusted: a delta pruned under a newer checkpoint while a follower
// reads it (PruneDeltas) lists fewer files or none, which would read as a
// version with fewer changes. A named file that is gone is NotFound; a
// manifest whose files do not add up to its rows, or that names a path
// outside its folder, is DataLoss.
absl::StatusOr<std::map<uint32_t, std::vector<DeltaFileRef>>> DeltaFilesByTable(const std::string& delta_dir,
                                                                                const pb::DeltaManifest& manifest);

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
// holds what they did), except the `keep_newest` newest deltas, and every
// unfinished one but `keep_tmp`.
void PruneDeltas(const std::string& storage_path, uint64_t version, const std::string& keep_tmp = "",
                 size_t keep_newest = 0);

}  // namespace sparta

#endif  // SPARTA_COMMON_DELTA_FILES_H_
