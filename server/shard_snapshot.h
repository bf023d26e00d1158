// What a primary sends a new replica of one of its shards, and what it
// takes at the moment the replica is added (the cut).
//
// A ShardCut is made by the shard's executor, in order with the pushes
// routed before the new view, so that it is exactly what the replica lacks:
// every table's admission counters are copied, the shard's changed rows are
// written to the store and a RocksDB snapshot is taken, from which the
// ShardStreamer then reads the rows in chunks. A server without a store
// (every row hot) copies the rows at the cut instead.
//
// Plain data: not thread-safe; handed from thread to thread by moves.
#ifndef SPARTA_SERVER_SHARD_SNAPSHOT_H_
#define SPARTA_SERVER_SHARD_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include <rocksdb/db.h>

#include "server/table_registry.h"

namespace sparta {

// One SHARD_SNAPSHOT message's worth of a shard.
struct SnapshotChunk {
  enum class Kind {
    kRows,       // `keys` and their `rows` (records of `record` floats)
    kAdmission,  // `table`'s admission counters in this shard
    kEnd,        // the shard is whole at the replica once the parts before it are loaded
    kCancelled,  // the stream stopped: the replica left the shard, or is past this view
    kFailed,     // the stream broke (the cut or a read failed, the replica could not load a
                 // part): worth another try while the replica still needs the shard
  };
  Kind kind = Kind::kRows;
  uint32_t peer = 0;    // the new replica's rank
  uint32_t shard = 0;
  uint64_t stream = 0;  // names the stream in acknowledgements
  const TableEntry* table = nullptr;
  uint32_t record = 0;  // floats per row: the row, then its stamp if the table expires rows
  std::vector<uint64_t> keys;
  std::vector<float> rows;
  std::vector<uint8_t> admission;

  // Bytes it holds, as counted against the stream's window.
  size_t bytes() const { return keys.size() * sizeof(uint64_t) + rows.size() * sizeof(float) + admission.size(); }
};

// A shard as of one moment, on its way to a new replica.
struct ShardCut {
  uint32_t peer = 0;
  uint32_t shard = 0;
  // The store as of the cut; null when the server has none (then `copied`
  // holds the rows).
  std::shared_ptr<const rocksdb::Snapshot> snapshot;
  // Tables whose rows are read from `snapshot`, with their record size.
  struct Table {
    const TableEntry* table = nullptr;
    uint32_t record = 0;
  };
  std::vector<Table> tables;
  // Parts made at the cut: admission counters, and rows without a store.
  std::vector<SnapshotChunk> copied;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_SHARD_SNAPSHOT_H_
