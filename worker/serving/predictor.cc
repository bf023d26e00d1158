#include "worker/serving/predictor.h"

#include "common/status_macros.h"
#include "worker/compute/backend_choice.h"

namespace sparta {

Predictor::Predictor(const Model* model, std::vector<pb::TableSpec> specs) : specs_(std::move(specs)) {
  // The CPU runner always: serving batches are small, and its forward-only
  // steps are batch-invariant (CpuBackend::set_batch_invariant).
  runner_ = NewCpuStepRunner(model, RunnerTablesOf(specs_));
  sparse_rows_.resize(specs_.size());
}

absl::StatusOr<std::vector<float>> Predictor::Predict(const ModelParameters& tables,
                                                      std::span<const Example* const> examples) {
  if (examples.empty()) return std::vector<float>();
  for (const Example* ex : examples) builder_.Add(*ex);
  std::unique_ptr<Batch> batch = builder_.Finish(/*bytes_read=*/0);
  std::vector<std::span<const float>> params;
  for (size_t t = 0; t < specs_.size(); ++t) {
    if (tables.is_dense(t)) {
      params.push_back(tables.Dense(t));
    } else {
      SPARTA_RETURN_IF_ERROR(tables.Gather(t, batch->unique_keys, &sparse_rows_[t]));
      params.emplace_back(sparse_rows_[t]);
    }
  }
  SPARTA_RETURN_IF_ERROR(runner_->Submit(++calls_, *batch, params, /*want_grads=*/false));
  SPARTA_ASSIGN_OR_RETURN(const StepOutput out, runner_->Collect());
  return std::vector<float>(out.probs.begin(), out.probs.end());
}

}  // namespace sparta
