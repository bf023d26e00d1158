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
// A published delta (serving.publish_every; common/delta_files.h) makes
// the next version from this one without copying it: a sparse table is a
// base (the rows as loaded) and an overlay (the rows changed since, and the
// keys deleted), which a newer version copies and extends; once the
// overlay has grown to half the base, the two are folded into a new base.
//
// Immutable once loaded, hence thread-safe; a newer version is a new
// object (the serving front-end swaps a shared_ptr) that shares the rows it
// did not change with the one before.
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
#include "worker/serving/model_parameters.h"

namespace sparta {

class ServingTables : public ModelParameters {
 public:
  // Loads the tables `specs` (a model's, as ModelTableSpecs makes them)
  // from the checkpoint folder `dir`. A table the checkpoint lacks, or holds
  // with another shape, is an error naming both.
  static absl::StatusOr<std::shared_ptr<const ServingTables>> FromCheckpoint(const std::string& dir,
                                                                           const std::vector<pb::TableSpec>& specs,
                                                                           const Config& config);

  // The model with no trained row, of the tables `saved` (a delta's
  // manifest's), which the model's `specs` must match (as FromCheckpoint()
  // checks): the start of a job's first delta. Version 0.
  static absl::StatusOr<std::shared_ptr<const ServingTables>> Empty(const std::string& dir,
                                                                  const std::vector<pb::TableSpec>& saved,
                                                                  const std::vector<pb::TableSpec>& specs,
                                                                  const Config& config);

  // This version with the delta in `delta_dir` applied: the delta's
  // version. Its base must be this version.
  absl::StatusOr<std::shared_ptr<const ServingTables>> WithDelta(const std::string& delta_dir) const;

  // The checkpoint's (or delta's) version number.
  uint64_t version() const override { return version_; }
  size_t num_tables() const { return tables_.size(); }
  uint64_t rows() const override { return rows_; }

  // Never fails: every row is here.
  absl::Status Gather(size_t t, std::span<const uint64_t> keys, std::vector<float>* out) const override;
  std::span<const float> Dense(size_t t) const override { return tables_[t].weights; }
  bool is_dense(size_t t) const override { return tables_[t].spec.kind() == pb::TableSpec::DENSE; }

 private:
  // Rows of a sparse table: shared, never changed once shared.
  struct Rows {
    absl::flat_hash_map<uint64_t, uint32_t> index;  // key -> row number in `weights`, or kDeleted
    std::vector<float> weights;                      // rows of dim floats
  };
  static constexpr uint32_t kDeleted = ~uint32_t{0};  // an overlay's mark of a deleted key
  struct Table {
    pb::TableSpec spec;
    bool admits_every_key = true;  // a missing key gets its initializer's row, else zeros
    std::shared_ptr<const Rows> base;     // sparse
    std::shared_ptr<const Rows> overlay;  // sparse: changed since `base` (null: nothing)
    std::vector<float> weights;           // dense: the blocks, padded
  };
  ServingTables() = default;
  // Checks `saved` against the model's `specs` (by name, kind and shape)
  // and makes their tables, empty (dense tables hold their initial values).
  static absl::StatusOr<std::shared_ptr<ServingTables>> MakeTables(const std::string& dir,
                                                                  const std::vector<pb::TableSpec>& saved,
                                                                  const std::vector<pb::TableSpec>& specs,
                                                                  const Config& config);
  // Rows held: sparse rows and dense blocks.
  void CountRows();

  uint64_t version_ = 0;
  uint64_t rows_ = 0;
  std::vector<Table> tables_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_SERVING_TABLES_H_
