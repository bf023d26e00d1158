// Predictor: the forward pass of a model over examples, with parameters
// from a served version (ModelParameters) instead of a training job's servers. It runs
// the model through the same CPU step runner a worker's evaluation uses,
// so a served probability is the one `eval.predictions_out` writes.
//
// Not thread-safe: one per compute thread (a runner keeps scratch state).
// The model and the tables must outlive it.
#ifndef SPARTA_WORKER_SERVING_PREDICTOR_H_
#define SPARTA_WORKER_SERVING_PREDICTOR_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "sparta.pb.h"
#include "sparta/sdk/model.h"
#include "worker/compute/step_runner.h"
#include "worker/data/batch.h"
#include "worker/serving/model_parameters.h"

namespace sparta {

class Predictor {
 public:
  // `specs`: the model's tables, in its order (ModelTableSpecs).
  Predictor(const Model* model, std::vector<pb::TableSpec> specs);

  // P(click) of each example, in order.
  absl::StatusOr<std::vector<float>> Predict(const ModelParameters& tables, std::span<const Example* const> examples);

 private:
  std::vector<pb::TableSpec> specs_;
  std::unique_ptr<StepRunner> runner_;
  BatchBuilder builder_;
  std::vector<std::vector<float>> sparse_rows_;  // per table, reused between calls
  uint64_t calls_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_PREDICTOR_H_
