#include "worker/compute/backend_choice.h"

#include "absl/strings/str_cat.h"

namespace sparta {

absl::StatusOr<BackendChoice> ChooseBackend(const Config& config, const Model& model,
                                            const std::function<GpuProbe()>& probe_gpus) {
  const std::string& wanted = config.worker.backend;  // for messages
  if (config.worker.backend_kind == BackendKind::kCpu) return BackendChoice{.cuda = false, .reason = "worker.backend: cpu"};
  const GpuProbe probe = probe_gpus();
  std::string why_not;
  if (probe.devices == 0) {
    why_not = probe.detail;
  } else if (!model.runs_on_backend()) {
    why_not = "the model computes on the host only (it implements Model::Compute, not ComputeOn)";
  }
  if (why_not.empty()) {
    return BackendChoice{.cuda = true, .device = 0, .reason = absl::StrCat("worker.backend: ", wanted, ", GPU 0 of ",
                                                                           probe.devices, ": ", probe.detail)};
  }
  if (config.worker.backend_kind == BackendKind::kCuda) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.Where("worker.backend"), ": key 'worker.backend' is cuda, but ", why_not,
                     "; use worker.backend: cpu or auto"));
  }
  return BackendChoice{.cuda = false, .reason = absl::StrCat("worker.backend: auto falls back to the CPU: ", why_not)};
}

std::vector<RunnerTable> RunnerTablesOf(const std::vector<pb::TableSpec>& tables) {
  std::vector<RunnerTable> runner_tables;
  for (const pb::TableSpec& t : tables) {
    runner_tables.push_back({.dense = t.kind() == pb::TableSpec::DENSE, .dense_size = t.dense_size()});
  }
  return runner_tables;
}

absl::StatusOr<std::unique_ptr<StepRunner>> NewStepRunner(const BackendChoice& choice, const Config& config,
                                                          const Model* model,
                                                          const std::vector<pb::TableSpec>& tables) {
  std::vector<RunnerTable> runner_tables = RunnerTablesOf(tables);
  if (!choice.cuda) return NewCpuStepRunner(model, std::move(runner_tables));
  return NewCudaStepRunner(model, std::move(runner_tables),
                           {.device = choice.device, .half_precision_copies = config.wire.value_type == WireDtype::kFp16});
}

}  // namespace sparta
