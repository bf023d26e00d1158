// One executor's share of a server's part of a published model version
// (serving.publish_every; the layout: common/delta_files.h), without
// sockets.
//
// A published version is cut like a checkpoint, while the workers are
// paused, and after PersistChanged(): the store then holds every row as
// of the cut, and the executor's ChangeLog names the rows written or
// deleted since the version the delta goes on from (its base). For each
// table, the rows of those keys in the shards this server leads go to one
// DeltaFile (server/delta_file.h) per executor: their weights as they are
// now, or a deletion for a key with no row left (expired). A shard that
// was streamed in whole since (ChangeLog::AddReplaced) is written whole.
//
// Runs on the executor's thread (a control task), like PersistChanged().
#ifndef SPARTA_SERVER_DELTA_PART_H_
#define SPARTA_SERVER_DELTA_PART_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/row_store.h"
#include "server/shard_executor.h"
#include "server/table_registry.h"
#include "sparta.pb.h"

namespace sparta {

struct DeltaPart {
  uint64_t rows = 0;               // rows and deletions written
  std::vector<uint32_t> replaced;  // shards written whole
  std::vector<pb::DeltaFile> files;  // what was written, for the manifest
};

// Writes `executor`'s share of version `version` (going on from `base`)
// into server `rank`'s part of the delta folder `delta_dir` (its
// server-<rank>/, which exists); `leads(shard)`: whether this server leads
// the shard at the cut.
absl::StatusOr<DeltaPart> WriteDeltaPart(ShardExecutor& executor, const RowStore& store, const TableRegistry& tables,
                                         uint64_t version, uint64_t base,
                                         const std::function<bool(uint32_t shard)>& leads,
                                         const std::string& delta_dir, int rank);

}  // namespace sparta

#endif  // SPARTA_SERVER_DELTA_PART_H_
