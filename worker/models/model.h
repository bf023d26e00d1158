// Model: what a worker trains. A model declares the parameter tables it
// needs and computes, for one batch, click probabilities and the gradient of
// the batch's mean logloss. It never talks to the network: the trainer pulls
// the rows a batch needs, hands them in as spans, and pushes the gradients
// the model writes. Built-in models and (later) user plugins implement the
// same interface.
//
// Compute() is const and keeps no state between calls, so one model may serve
// several compute threads.
#ifndef SPARTA_WORKER_MODELS_MODEL_H_
#define SPARTA_WORKER_MODELS_MODEL_H_

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta.pb.h"
#include "worker/data/batch.h"

namespace sparta {

struct TableDecl {
  std::string name;
  pb::TableSpec::Kind kind = pb::TableSpec::SPARSE;
  uint32_t dim = 1;         // sparse: floats per key
  uint64_t dense_size = 0;  // dense: floats in the table
  pb::InitializerSpec initializer;
};

// By declared table: a sparse table's rows for batch.unique_keys
// (unique_keys.size() * dim floats, row i for key i); a dense table's
// dense_size floats.
using ParamSpans = std::vector<std::span<const float>>;
using GradSpans = std::vector<std::span<float>>;

class Model {
 public:
  virtual ~Model() = default;

  virtual std::vector<TableDecl> Tables() const = 0;

  // Writes P(click) of each example to probs[0, batch.size). If `grads` is
  // not null, overwrites it with d(summed logloss)/d(params), laid out like
  // `params`. Returns the batch's summed logloss.
  virtual double Compute(const Batch& batch, const ParamSpans& params, const GradSpans* grads,
                         float* probs) const = 0;
};

absl::StatusOr<std::unique_ptr<Model>> CreateModel(const ModelConfig& config);

}  // namespace sparta

#endif  // SPARTA_WORKER_MODELS_MODEL_H_
