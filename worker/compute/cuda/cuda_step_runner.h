// The CUDA step runner: a model's steps on one GPU, two in flight, scheduled
// by stream_plan.h on three streams (copy-in, compute, copy-out) with pinned
// host buffers, so that a step's kernels overlap the next step's input copy
// and the previous step's gradient copy and push.
//
// With half_precision_copies (wire.dtype: fp16), parameters and gradients
// cross PCIe as fp16; the device converts them, and computes and sums in
// fp32.
//
// Not thread-safe: one runner per compute thread; it binds the thread to
// its device.
#ifndef SPARTA_WORKER_COMPUTE_CUDA_CUDA_STEP_RUNNER_H_
#define SPARTA_WORKER_COMPUTE_CUDA_CUDA_STEP_RUNNER_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/compute/cuda_module.h"
#include "worker/compute/step_runner.h"

namespace sparta {

// The module's probe: the CUDA devices this process sees.
GpuProbe ProbeCudaDevices();

// Part of the module (libsparta_cuda.so); programs call NewCudaStepRunner()
// (worker/compute/cuda_module.h), which loads the module and calls this.
absl::StatusOr<std::unique_ptr<StepRunner>> NewGpuStepRunner(const Model* model, std::vector<RunnerTable> tables,
                                                             const CudaRunnerOptions& options);

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_CUDA_CUDA_STEP_RUNNER_H_
