// The module's GPU probe (ProbeGpus() in worker/compute/cuda_module.h
// loads the module and calls it). Without a driver, cudaGetDeviceCount
// returns an error (35, insufficient driver) rather than zero devices: any
// error means no usable GPU.
#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "worker/compute/cuda/cuda_step_runner.h"

namespace sparta {

GpuProbe ProbeCudaDevices() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    return {.devices = 0, .detail = absl::StrCat("no usable GPU (", cudaGetErrorString(status), ")")};
  }
  if (count == 0) return {.devices = 0, .detail = "no CUDA device is visible"};
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, 0) != cudaSuccess) return {.devices = count, .detail = "device 0"};
  return {.devices = count, .detail = absl::StrCat(props.name, ", sm_", props.major, props.minor, ", ",
                                                   props.totalGlobalMem >> 20, " MiB")};
}

}  // namespace sparta
