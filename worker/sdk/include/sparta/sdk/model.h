// Model: what a worker trains. A model declares the parameter tables it
// needs and computes, for one batch, click probabilities and the gradient of
// the batch's summed logloss. It never talks to the network: the worker
// pulls the rows a batch needs, hands them in through a parameter view, and
// pushes the gradients the model writes. The built-in models (lr, fm, dnn)
// implement this same interface.
//
// A model computes in one of two ways:
//   - ComputeOn(): written against a ComputeBackend (backend.h), so the same
//     code runs on the CPU or on a GPU (`worker.backend: cpu|cuda|auto`).
//     The built-in models work this way.
//   - Compute(): plain C++ over host memory; such a model runs on the CPU
//     backend only, and `worker.backend: cuda` refuses it.
// A model overrides one of them (and runs_on_backend() for the first).
//
// Both are const and must keep no state between calls: a worker with
// `worker.threads: N` calls them from N threads at once on one instance.
// Part of the plugin ABI (see plugin.h).
#ifndef SPARTA_SDK_MODEL_H_
#define SPARTA_SDK_MODEL_H_

#include <span>
#include <stdexcept>
#include <vector>

#include "sparta/sdk/backend.h"
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

  // The host path. Writes P(click) of each example to probs[0, batch.size).
  // If `grads` is not null, overwrites it with d(summed logloss)/d(params).
  // Returns the batch's summed logloss.
  virtual double Compute(const Batch& batch, const ParamSpans& params, const GradSpans* grads,
                         float* probs) const {
    throw std::logic_error("this model implements neither Compute nor ComputeOn");
  }

  // True if the model implements ComputeOn; the worker then uses it on
  // every backend, the CPU included.
  virtual bool runs_on_backend() const { return false; }

  // The backend path: as Compute, with `params`, `grads` and `probs` in the
  // backend's memory and the batch as a BatchView. `grads` arrive zeroed, so
  // the model may add to them. The worker computes the loss from `probs`.
  virtual void ComputeOn(ComputeBackend& backend, const BatchView& batch, const ParamSpans& params,
                         const GradSpans* grads, float* probs) const {
    throw std::logic_error("this model has no ComputeOn");
  }
};

// What a model factory is given.
struct ModelContext {
  const Options* options = nullptr;
  DataSchema schema;
};

}  // namespace sparta

#endif  // SPARTA_SDK_MODEL_H_
