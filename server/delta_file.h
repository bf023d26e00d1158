// DeltaFile: one table's rows in one executor's part of a published model
// version (common/delta_files.h), as an SST file written by RocksDB's
// SstFileWriter: keys are RowKey(shard, key), ascending; a value is the
// row's weights (dim floats, no optimizer state: serving reads only
// weights), or empty for a row deleted since the delta's base (expired).
//
// A DeltaFileWriter is used by one thread; ReadDeltaFile() by any.
#ifndef SPARTA_SERVER_DELTA_FILE_H_
#define SPARTA_SERVER_DELTA_FILE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include <rocksdb/sst_file_writer.h>

#include "absl/status/statusor.h"
#include "common/delta_files.h"

namespace sparta {

class DeltaFileWriter {
 public:
  // Nothing is created until the first row (an SST file holds at least one).
  explicit DeltaFileWriter(std::string path);
  ~DeltaFileWriter();

  // Rows must come in (shard, key) order.
  absl::Status Put(uint32_t shard, uint64_t key, std::span<const float> weights);
  absl::Status Delete(uint32_t shard, uint64_t key);
  // Completes the file (if any row was added).
  absl::Status Finish();
  uint64_t rows() const { return rows_; }

 private:
  absl::Status Add(uint32_t shard, uint64_t key, const char* bytes, size_t size);

  const std::string path_;
  std::unique_ptr<rocksdb::SstFileWriter> writer_;
  uint64_t rows_ = 0;
};

// Calls `visit` for every row of the delta file `path`, in key order; an
// empty `weights` is a deletion.
using DeltaRowVisitor = std::function<void(uint32_t shard, uint64_t key, std::span<const float> weights)>;
absl::Status ReadDeltaFile(const std::string& path, const DeltaRowVisitor& visit);
// The same for a file its delta's manifest names (DeltaFilesByTable()),
// which must hold the rows the manifest says: fewer is DataLoss.
absl::Status ReadDeltaFile(const DeltaFileRef& file, const DeltaRowVisitor& visit);

}  // namespace sparta

#endif  // SPARTA_SERVER_DELTA_FILE_H_
