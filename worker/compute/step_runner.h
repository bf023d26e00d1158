// StepRunner: runs a model's forward and backward passes for a trainer on
// one compute backend, and hands back host-side gradients to push.
//
// Submit() starts a step and Collect() returns the oldest step not yet
// collected, so that a runner with depth() > 1 can overlap one step's
// kernels with the copies of its neighbours (the CUDA runner); a runner of
// depth 1 (the CPU) computes in Submit(). A step's batch and parameters are
// read before Submit() returns; the caller may free them then.
//
// Not thread-safe: one runner per compute thread.
#ifndef SPARTA_WORKER_COMPUTE_STEP_RUNNER_H_
#define SPARTA_WORKER_COMPUTE_STEP_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sparta/sdk/model.h"

namespace sparta {

// What a runner needs to know of each of the model's tables.
struct RunnerTable {
  bool dense = false;
  uint64_t dense_size = 0;  // floats the model sees of a dense table
};

// One computed step. Spans point into the runner and stay valid until the
// next Collect() or Submit().
struct StepOutput {
  uint64_t step = 0;
  // Per table, the gradient with the same (padded) size as the parameters
  // handed to Submit(); empty without gradients.
  std::vector<std::span<const float>> grads;
  std::span<const float> probs;
  double loss = 0;  // summed logloss of the batch
};

class StepRunner {
 public:
  virtual ~StepRunner() = default;

  virtual const char* backend_name() const = 0;
  // Steps that may be submitted and not yet collected.
  virtual int max_depth() const = 0;

  // `params` per table: a sparse table's rows for batch.unique_keys, or a
  // dense table's values padded to whole blocks (the model sees the first
  // dense_size floats; the padding's gradient is zero).
  virtual absl::Status Submit(uint64_t step, const Batch& batch, const std::vector<std::span<const float>>& params,
                              bool want_grads) = 0;
  virtual absl::StatusOr<StepOutput> Collect() = 0;
};

// Helpers both runners share.
// Floats of a table's buffer the model sees: dense tables without their padding.
inline size_t VisibleSize(const RunnerTable& table, size_t padded) { return table.dense ? table.dense_size : padded; }
// Summed logloss of a batch from its probabilities.
double SummedLogLoss(std::span<const float> probs, std::span<const float> labels);
// Runs a model call; a model that throws (a plugin's bug or its error)
// becomes an error status naming the step instead of a crash.
absl::Status GuardModelCall(uint64_t step, const std::function<void()>& call);

// The CPU runner: depth 1, computing in the calling thread.
std::unique_ptr<StepRunner> NewCpuStepRunner(const Model* model, std::vector<RunnerTable> tables);

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_STEP_RUNNER_H_
