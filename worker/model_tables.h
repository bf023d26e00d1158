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

}  // namespace sparta

#endif  // SPARTA_WORKER_MODEL_TABLES_H_
