// ModelParameters: one version of a model's parameters, as a served forward
// pass reads them: each sparse table's rows for a batch's keys, each dense
// table whole. Two kinds: ServingTables holds every table in this process
// (serving.shards: 0); ShardedTables reads sparse rows from a serving
// cluster's servers through a cache (serving.shards > 0).
//
// Immutable once made, and thread-safe: any number of compute threads
// read one version at once.
#ifndef SPARTA_WORKER_SERVING_MODEL_PARAMETERS_H_
#define SPARTA_WORKER_SERVING_MODEL_PARAMETERS_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace sparta {

class ModelParameters {
 public:
  virtual ~ModelParameters() = default;

  // The version number: the checkpoint's, or the delta's.
  virtual uint64_t version() const = 0;
  // Rows this process holds (sparse rows and dense blocks), for /metrics.
  virtual uint64_t rows() const = 0;
  virtual bool is_dense(size_t t) const = 0;
  // A dense table's floats, padded to whole blocks as a pull returns them.
  virtual std::span<const float> Dense(size_t t) const = 0;
  // Sparse table t's weights for `keys`, row after row (keys.size() * dim
  // floats), into `out` (resized). A key the version holds no row for reads
  // as a training pull would: its initial row, or zeros under admission.
  // An error when the rows could not be read (a serving cluster that lost
  // every copy of a shard).
  virtual absl::Status Gather(size_t t, std::span<const uint64_t> keys, std::vector<float>* out) const = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_MODEL_PARAMETERS_H_
