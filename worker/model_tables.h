// ModelTableSpecs: the tables a model declares, as the servers will hold
// them (ids, kinds, dims, initializers, optimizers from the job's config).
// Dense tables become rows ("blocks") of at most kDenseBlockFloats floats.
// Pure function; thread-safe.
#ifndef SPARTA_WORKER_MODEL_TABLES_H_
#define SPARTA_WORKER_MODEL_TABLES_H_

#include <cstdint>
#include <vector>

#include "common/config.h"
#include "sparta.pb.h"
#include "sparta/sdk/model.h"

namespace sparta {

std::vector<pb::TableSpec> ModelTableSpecs(const Model& model, const Config& config);

// The built-in deep model (dnn) trains its dense tables (its MLP layers)
// with Adam at this rate when optimizer.dense_name is not set: the job's
// optimizer (FTRL in the quickstart) suits sparse linear weights, not dense
// layers. Measured on generated Criteo-like data (README, "Models and
// optimizers"). optimizer.dense_learning_rate, when set, wins.
inline constexpr const char* kDeepDenseOptimizer = "adam";
inline constexpr double kDeepDenseLearningRate = 0.005;
// Whether `config` leaves its model's dense tables to that default.
bool UsesDeepDenseDefault(const Config& config);

}  // namespace sparta

#endif  // SPARTA_WORKER_MODEL_TABLES_H_
