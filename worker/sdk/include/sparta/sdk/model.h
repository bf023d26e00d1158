// Model: what a worker trains. A model declares the parameter tables it
// needs and computes, for one batch, click probabilities and the gradient of
// the batch's summed logloss. It never talks to the network: the worker
// pulls the rows a batch needs, hands them in through a parameter view, and
// pushes the gradients the model writes. The built-in models (lr, fm, dnn)
// implement this same interface.
//
// Compute() is const and must keep no state between calls: a worker with
// `worker.threads: N` calls it from N threads at once on one instance.
// Part of the plugin ABI (see plugin.h).
#ifndef SPARTA_SDK_MODEL_H_
#define SPARTA_SDK_MODEL_H_

#include <span>
#include <vector>

#include "sparta/sdk/example.h"
#include "sparta/sdk/options.h"
#include "sparta/sdk/table.h"

namespace sparta {

// What the job's reader produces, for models whose shape depends on it.
struct DataSchema {
  uint32_t num_fields = 1;  // features carry field ids in [0, num_fields)
  uint32_t num_dense = 0;   // dense floats per example
};

// The parameter view, by declared table: a sparse table's rows for
// batch.unique_keys (unique_keys.size() * dim floats, row i for key i); a
// dense table's dense_size floats. Gradients are laid out the same way.
using ParamSpans = std::vector<std::span<const float>>;
using GradSpans = std::vector<std::span<float>>;

class Model {
 public:
  virtual ~Model() = default;

  virtual std::vector<TableDecl> Tables() const = 0;

  // Writes P(click) of each example to probs[0, batch.size). If `grads` is
  // not null, overwrites it with d(summed logloss)/d(params). Returns the
  // batch's summed logloss.
  virtual double Compute(const Batch& batch, const ParamSpans& params, const GradSpans* grads,
                         float* probs) const = 0;
};

// What a model factory is given.
struct ModelContext {
  const Options* options = nullptr;
  DataSchema schema;
};

}  // namespace sparta

#endif  // SPARTA_SDK_MODEL_H_
