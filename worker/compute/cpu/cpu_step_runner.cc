// The CPU step runner: a model on the CpuBackend (or a host-only plugin
// model through Model::Compute), in the calling thread.
#include <algorithm>

#include "worker/compute/batch_plan.h"
#include "worker/compute/cpu/cpu_backend.h"
#include "worker/compute/step_runner.h"

namespace sparta {
namespace {

class CpuStepRunner final : public StepRunner {
 public:
  CpuStepRunner(const Model* model, std::vector<RunnerTable> tables)
      : model_(model), tables_(std::move(tables)), grads_(tables_.size()) {}

  const char* backend_name() const override { return "cpu"; }
  int max_depth() const override { return 1; }

  absl::Status Submit(uint64_t step, const Batch& batch, const std::vector<std::span<const float>>& params,
                      bool want_grads) override {
    output_ = StepOutput{.step = step};
    ParamSpans visible;
    GradSpans grad_spans;
    for (size_t t = 0; t < tables_.size(); ++t) {
      visible.push_back(params[t].first(VisibleSize(tables_[t], params[t].size())));
      if (!want_grads) continue;
      grads_[t].assign(params[t].size(), 0.0f);  // zeroed, and the padding stays zero
      grad_spans.emplace_back(grads_[t].data(), visible.back().size());
      output_.grads.emplace_back(grads_[t]);
    }
    probs_.resize(batch.size);
    const GradSpans* grads = want_grads ? &grad_spans : nullptr;
    double loss = 0;
    absl::Status status = GuardModelCall(step, [&] {
      if (model_->runs_on_backend()) {
        backend_.ResetScratch();
        backend_.set_batch_invariant(!want_grads);
        // The CPU backend reads no plans: an empty one costs nothing.
        model_->ComputeOn(backend_, HostBatchView(batch, no_plan_), visible, grads, probs_.data());
        loss = SummedLogLoss(probs_, batch.labels);
      } else {
        loss = model_->Compute(batch, visible, grads, probs_.data());
      }
    });
    output_.probs = probs_;
    output_.loss = loss;
    pending_ = status.ok();
    return status;
  }

  absl::StatusOr<StepOutput> Collect() override {
    if (!pending_) return absl::FailedPreconditionError("Collect() without a submitted step");
    pending_ = false;
    return output_;
  }

 private:
  const Model* const model_;
  const std::vector<RunnerTable> tables_;
  CpuBackend backend_;
  const BatchPlan no_plan_;
  std::vector<std::vector<float>> grads_;
  std::vector<float> probs_;
  StepOutput output_;
  bool pending_ = false;
};

}  // namespace

std::unique_ptr<StepRunner> NewCpuStepRunner(const Model* model, std::vector<RunnerTable> tables) {
  return std::make_unique<CpuStepRunner>(model, std::move(tables));
}

}  // namespace sparta
