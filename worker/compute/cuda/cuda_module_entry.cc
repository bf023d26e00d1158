// The one symbol libsparta_cuda.so exports (the module is built with hidden
// visibility): what a program finds with dlsym after loading it, see
// worker/compute/cuda_module.h.
#include "worker/compute/cuda/cuda_step_runner.h"
#include "worker/compute/cuda_module.h"

extern "C" __attribute__((visibility("default"))) const sparta::CudaModule* sparta_cuda_module() {
  static const sparta::CudaModule module{
      .abi = sparta::kCudaModuleAbi, .probe = &sparta::ProbeCudaDevices, .new_step_runner = &sparta::NewGpuStepRunner};
  return &module;
}
