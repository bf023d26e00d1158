// One server's side of a checkpoint, without sockets: cutting its part and,
// when a job resumes, restoring the shards it holds.
//
// A published model version (serving.publish_every) is cut the same way,
// and written as the rows changed since the version before it.
//
// A cut runs while the workers are paused: every executor's queue then ends
// with the last push before the cut, so a task queued behind it on each
// executor writes every changed row to the server's RowStore, and a RocksDB
// checkpoint of the live database (hard links, no copy) becomes the part,
// under <dir>/server-<rank>. A restore loads, for each shard this server
// holds in the first view, the rows from whichever server's part holds it
// (the shard map of the checkpoint's manifest), so a job may resume on
// another number of servers.
//
// The functions run on the server's I/O thread; they use the executors only
// through their queues (a cut) or before the executors start (a restore).
#ifndef SPARTA_SERVER_CHECKPOINT_PART_H_
#define SPARTA_SERVER_CHECKPOINT_PART_H_

#include <functional>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "common/shard_view.h"
#include "server/row_store.h"
#include "server/shard_executor.h"
#include "server/table_registry.h"
#include "sparta.pb.h"

namespace sparta {

using Executors = std::span<const std::unique_ptr<ShardExecutor>>;

// Runs `fn` on every executor's thread, in order with the work queued
// there, and waits for all of them. The executors must be running.
void OnEveryExecutor(Executors executors, const std::function<void(ShardExecutor&)>& fn);

// Cuts this server's (`rank`) part of the checkpoint `request` names into
// `store`'s checkpoint folder for it. Returns what the manifest records of
// it: rows and tables. A request with a delta_dir is also a published model
// version (serving.publish_every): the server writes its part of the delta
// (server/delta_part.h) for the shards it leads in `view`; one that is
// publish_only makes no checkpoint besides.
absl::StatusOr<pb::CheckpointInfo> CutCheckpointPart(const pb::CheckpointInfo& request, int rank, RowStore* store,
                                                     const TableRegistry& tables, Executors executors,
                                                     const ShardView& view);

// Loads the rows of the shards `rank` holds in `view` from the checkpoint
// in `dir`, creating its tables (in `store` too, if any). With `wal` the
// rows are also written to `store` at once (a write-ahead log's database
// holds every row); so are they with executors that log their writes
// (serving.publish_every), whose logs then start at the checkpoint's
// version. `step`: the furthest worker step of the checkpoint;
// rows saved without a stamp (by a job without embedding.eviction.ttl)
// count as updated then. The executors must not be running yet.
absl::Status RestoreCheckpointPart(const std::string& dir, const ShardView& view, uint32_t rank, bool wal,
                                   uint64_t step, TableRegistry* tables, RowStore* store, Executors executors);

}  // namespace sparta

#endif  // SPARTA_SERVER_CHECKPOINT_PART_H_
