// ServingTables: one version of a trained model's parameters, held in
// memory for answering predictions: per sparse table a hash index from key
// to its weights, per dense table its floats. The optimizer state a
// checkpoint keeps beside each row is dropped on loading: serving only
// reads the weights.
//
// A key the version does not hold gets the row a training pull would have
// got: its initializer's (deterministic in the key), or zeros where the
// table admits keys only after some occurrences (embedding.admission).
// So a served prediction equals a worker's evaluation of the same version.
//
// Immutable once loaded, hence thread-safe; a newer version is a new
// object (the serving front-end swaps a shared_ptr).
#ifndef SPARTA_WORKER_SERVING_SERVING_TABLES_H_
#define SPARTA_WORKER_SERVING_SERVING_TABLES_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta.pb.h"

namespace sparta {

class ServingTables {
 public:
  // Loads the tables `specs` (a model's, as ModelTableSpecs makes them)
  // from the checkpoint folder `dir`. A table the checkpoint lacks, or holds
  // with another shape, is an error naming both.
  static absl::StatusOr<std::shared_ptr<const ServingTables>> FromCheckpoint(const std::string& dir,
                                                                           const std::vector<pb::TableSpec>& specs,
                                                                           const Config& config);

  // The checkpoint's version number.
  uint64_t version() const { return version_; }
  size_t num_tables() const { return tables_.size(); }
  uint64_t rows() const { return rows_; }

  // Table t's weights for `keys`, row after row (keys.size() * dim floats),
  // into `out` (resized). Sparse tables only.
  void Gather(size_t t, std::span<const uint64_t> keys, std::vector<float>* out) const;
  // A dense table's floats, padded to whole blocks as a pull returns them.
  std::span<const float> Dense(size_t t) const { return tables_[t].weights; }
  bool is_dense(size_t t) const { return tables_[t].spec.kind() == pb::TableSpec::DENSE; }

 private:
  struct Table {
    pb::TableSpec spec;
    bool admits_every_key = true;  // a missing key gets its initializer's row, else zeros
    absl::flat_hash_map<uint64_t, uint32_t> index;  // sparse: key -> row number in `weights`
    std::vector<float> weights;                      // rows of spec.dim() floats
  };
  ServingTables() = default;

  uint64_t version_ = 0;
  uint64_t rows_ = 0;
  std::vector<Table> tables_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_SERVING_TABLES_H_
