// ChooseBackend: worker.backend cpu never probes for a GPU (probing loads
// the CUDA module and cuBLAS, worker/compute/cuda_module.h); auto takes
// the GPU a probe finds or says why it falls back; cuda without one is
// refused with the config line.
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "common/config.h"
#include "sparta/sdk/options.h"
#include "worker/compute/backend_choice.h"
#include "worker/models/builtin_models.h"

namespace sparta::backend_choice_test {
namespace {

Config ConfigWith(const std::string& backend) {
  const std::string yaml = "cluster:\n  scheduler: 127.0.0.1:7000\n  servers: 1\n  workers: 1\n"
                           "data:\n  train: a.txt\n"
                           "model:\n  name: lr\n"
                           "worker:\n  backend: " + backend + "\n";
  auto config = ParseConfig(yaml, "job.yaml", {});
  REQUIRE(config.ok());
  return *config;
}

std::unique_ptr<Model> Lr() {
  Options options;
  std::string error;
  std::unique_ptr<Model> model(BuiltinModel("lr")({.options = &options, .schema = {}}, &error));
  INFO(error);
  REQUIRE(model != nullptr);
  REQUIRE(model->runs_on_backend());
  return model;
}

// A probe that counts its calls and finds what it is told to.
struct FakeProbe {
  GpuProbe found;
  int calls = 0;
  std::function<GpuProbe()> fn() {
    return [this] {
      ++calls;
      return found;
    };
  }
};

TEST_CASE("worker.backend cpu never probes for a GPU") {
  auto model = Lr();
  FakeProbe probe{.found = {.devices = 1, .detail = "a GPU it must not look for"}};
  auto choice = ChooseBackend(ConfigWith("cpu"), *model, probe.fn());
  REQUIRE(choice.ok());
  CHECK_FALSE(choice->cuda);
  CHECK(choice->reason == "worker.backend: cpu");
  CHECK(probe.calls == 0);
}

TEST_CASE("worker.backend auto takes the GPU a probe finds, or says why it falls back") {
  auto model = Lr();
  FakeProbe with{.found = {.devices = 2, .detail = "NVIDIA H200, sm_90"}};
  auto gpu = ChooseBackend(ConfigWith("auto"), *model, with.fn());
  REQUIRE(gpu.ok());
  CHECK(gpu->cuda);
  CHECK(gpu->device == 0);
  CHECK(gpu->reason == "worker.backend: auto, GPU 0 of 2: NVIDIA H200, sm_90");
  CHECK(with.calls == 1);

  FakeProbe without{.found = {.devices = 0, .detail = "no usable GPU (the CUDA backend cannot be loaded: x)"}};
  auto cpu = ChooseBackend(ConfigWith("auto"), *model, without.fn());
  REQUIRE(cpu.ok());
  CHECK_FALSE(cpu->cuda);
  CHECK(cpu->reason ==
        "worker.backend: auto falls back to the CPU: no usable GPU (the CUDA backend cannot be loaded: x)");
  CHECK(without.calls == 1);
}

TEST_CASE("worker.backend cuda without a GPU is refused with its config line") {
  auto model = Lr();
  FakeProbe without{.found = {.devices = 0, .detail = "no CUDA device is visible"}};
  auto choice = ChooseBackend(ConfigWith("cuda"), *model, without.fn());
  REQUIRE_FALSE(choice.ok());
  CHECK_THAT(std::string(choice.status().message()),
             Catch::Matches("job.yaml:\\d+: key 'worker.backend' is cuda, but no CUDA device is visible; use "
                            "worker.backend: cpu or auto"));
}

}  // namespace
}  // namespace sparta::backend_choice_test
