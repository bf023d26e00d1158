// VerifyCheckpoint(): reads a whole checkpoint before a job restores from
// it, so that a damaged one is refused instead of loaded with rows missing.
//
// For every server-<rank>/ part the manifest lists: RocksDB's
// VerifyChecksum() over all its table files (every block's checksum), then
// one pass over each table's column family counting rows, compared with the
// rows the manifest says the part holds. The first problem found is a
// DataLoss error naming the file or the part and what is wrong.
//
// Stateless; thread-safe.
#ifndef SPARTA_SCHEDULER_CHECKPOINT_VERIFIER_H_
#define SPARTA_SCHEDULER_CHECKPOINT_VERIFIER_H_

#include <string>

#include "absl/status/status.h"
#include "sparta.pb.h"

namespace sparta {

absl::Status VerifyCheckpoint(const std::string& checkpoint_dir, const pb::CheckpointManifest& manifest);

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_CHECKPOINT_VERIFIER_H_
