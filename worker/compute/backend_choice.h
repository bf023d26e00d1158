// Chooses the compute backend of a worker from `worker.backend` (cpu, cuda
// or auto) once at start, and makes each compute thread's StepRunner on it.
//
//   cpu:  always the CPU (OpenBLAS).
//   cuda: the GPU; a clear error naming the config line if this binary was
//         built without CUDA, no device is usable, or the model computes on
//         the host only (it implements Model::Compute, not ComputeOn).
//   auto: the GPU when cuda would work, else the CPU, with one log line
//         saying which and why.
//
// The GPU is device 0 of those the process sees; place workers on GPUs
// with CUDA_VISIBLE_DEVICES. Thread-safe (no state).
#ifndef SPARTA_WORKER_COMPUTE_BACKEND_CHOICE_H_
#define SPARTA_WORKER_COMPUTE_BACKEND_CHOICE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta.pb.h"
#include "sparta/sdk/model.h"
#include "worker/compute/cuda_module.h"
#include "worker/compute/step_runner.h"

namespace sparta {

struct BackendChoice {
  bool cuda = false;
  int device = 0;
  std::string reason;  // for the log: why this backend
};

// `probe_gpus` (ProbeGpus in production) is called only when the GPU is a
// candidate (backend cuda or auto): probing loads the CUDA module, and with
// it cuBLAS, half a second of a worker's start that `cpu` must not pay.
absl::StatusOr<BackendChoice> ChooseBackend(const Config& config, const Model& model,
                                            const std::function<GpuProbe()>& probe_gpus);

// What a step runner needs to know of each of the model's tables.
std::vector<RunnerTable> RunnerTablesOf(const std::vector<pb::TableSpec>& tables);

absl::StatusOr<std::unique_ptr<StepRunner>> NewStepRunner(const BackendChoice& choice, const Config& config,
                                                          const Model* model,
                                                          const std::vector<pb::TableSpec>& tables);

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_BACKEND_CHOICE_H_
