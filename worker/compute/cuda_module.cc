#include "worker/compute/cuda_module.h"

#include <dlfcn.h>

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sparta {
namespace {

#if SPARTA_HAVE_CUDA
// Where the module may be, in the order tried (see cuda_module.h).
std::vector<std::string> ModuleCandidates() {
  std::vector<std::string> out;
  std::error_code error;
  const std::filesystem::path program = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    const std::filesystem::path dir = program.parent_path();
    out.push_back((dir / kCudaModuleFile).string());
    out.push_back((dir.parent_path() / "lib" / "sparta" / kCudaModuleFile).string());
  }
  out.push_back(kCudaModuleFile);  // the loader's own search
  return out;
}

absl::StatusOr<const CudaModule*> Load() {
  std::vector<std::string> tried;
  for (const std::string& path : ModuleCandidates()) {
    const bool bare = path.find('/') == std::string::npos;
    if (!bare && !std::filesystem::exists(path)) continue;
    // RTLD_LOCAL: the module's CUDA libraries and its copies of Sparta's
    // helpers stay its own. Never closed (see cuda_module.h).
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      // Found but not loadable (CUDA's libraries missing, most often):
      // that is the reason to report, not the places it was not.
      const char* why = dlerror();
      if (!bare) return absl::UnavailableError(absl::StrCat(path, ": ", why ? why : "cannot be loaded"));
      tried.push_back(why ? why : path);
      continue;
    }
    auto entry = reinterpret_cast<const CudaModule* (*)()>(dlsym(handle, kCudaModuleSymbol));
    if (entry == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(path, " has no ", kCudaModuleSymbol, "()"));
    }
    const CudaModule* module = entry();
    if (module == nullptr || module->abi != kCudaModuleAbi) {
      return absl::FailedPreconditionError(absl::StrCat(path, " is from another build of Sparta (interface ",
                                                        module ? module->abi : 0, ", this program's ",
                                                        kCudaModuleAbi, ")"));
    }
    return module;
  }
  return absl::NotFoundError(absl::StrCat(kCudaModuleFile, " is not beside this program nor in ../lib/sparta (",
                                          absl::StrJoin(tried, "; "), ")"));
}
#endif

}  // namespace

absl::StatusOr<const CudaModule*> LoadCudaModule() {
#if SPARTA_HAVE_CUDA
  static const absl::StatusOr<const CudaModule*> module = Load();  // once, thread-safe
  return module;
#else
  return absl::UnimplementedError("this worker was built without CUDA (no nvcc at build time, or SPARTA_CUDA=OFF)");
#endif
}

GpuProbe ProbeGpus() {
  auto module = LoadCudaModule();
  if (absl::IsUnimplemented(module.status())) return {.devices = 0, .detail = std::string(module.status().message())};
  if (!module.ok()) {
    return {.devices = 0,
            .detail = absl::StrCat("no usable GPU (the CUDA backend cannot be loaded: ", module.status().message(), ")")};
  }
  return (*module)->probe();
}

absl::StatusOr<std::unique_ptr<StepRunner>> NewCudaStepRunner(const Model* model, std::vector<RunnerTable> tables,
                                                              const CudaRunnerOptions& options) {
  auto module = LoadCudaModule();
  if (!module.ok()) return module.status();
  return (*module)->new_step_runner(model, std::move(tables), options);
}

}  // namespace sparta
