// The CUDA backend as a module loaded on first use.
//
// The backend (worker/compute/cuda/) is built into a shared module of its
// own, libsparta_cuda.so, which alone links the CUDA runtime and cuBLAS.
// Programs that only might use it (sparta-worker, sparta-serve, sparta-ctl,
// the tests) load it the first time a worker asks for a GPU, not at start:
// mapping and relocating cuBLAS took about half a second of every start of
// those programs, GPU or not, and a program linked to it would not start
// at all on a machine without CUDA's libraries, where this one runs on the
// CPU and says why the GPU is out of reach.
//
// The module is looked for beside the running program (build/bin, a GPU
// bundle's bin/), then in ../lib/sparta from there (an installed tree),
// then by the loader's own search (LD_LIBRARY_PATH).
//
// Thread-safe: the module is loaded once, whichever thread asks first, and
// stays loaded for the life of the process (runners it made may outlive
// any caller).
#ifndef SPARTA_WORKER_COMPUTE_CUDA_MODULE_H_
#define SPARTA_WORKER_COMPUTE_CUDA_MODULE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sparta/sdk/model.h"
#include "worker/compute/step_runner.h"

namespace sparta {

// What this process can see of GPUs.
struct GpuProbe {
  int devices = 0;     // usable CUDA devices
  std::string detail;  // the first device's name, or why there is none
};
// Loads the module if it can; without it, no devices and the reason.
GpuProbe ProbeGpus();

struct CudaRunnerOptions {
  int device = 0;
  bool half_precision_copies = false;
};

// A step runner on GPU `options.device`, made by the module.
absl::StatusOr<std::unique_ptr<StepRunner>> NewCudaStepRunner(const Model* model, std::vector<RunnerTable> tables,
                                                              const CudaRunnerOptions& options);

// What the module hands the program: its one exported symbol,
// sparta_cuda_module(), returns a pointer to this. `abi` must equal
// kCudaModuleAbi: a module from another build is refused, not called.
// Bump it whenever this struct or a type it names changes.
inline constexpr uint32_t kCudaModuleAbi = 1;
struct CudaModule {
  uint32_t abi;
  GpuProbe (*probe)();
  absl::StatusOr<std::unique_ptr<StepRunner>> (*new_step_runner)(const Model* model, std::vector<RunnerTable> tables,
                                                                  const CudaRunnerOptions& options);
};
inline constexpr char kCudaModuleFile[] = "libsparta_cuda.so";
inline constexpr char kCudaModuleSymbol[] = "sparta_cuda_module";

// The module, loaded on the first call; the same answer afterwards.
absl::StatusOr<const CudaModule*> LoadCudaModule();

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_CUDA_MODULE_H_
