// GPU kernel benchmark: the CUDA backend's embedding gather (per-field
// pooling) and its backward scatter (per-key segmented reduction) on a
// Criteo-shaped batch, as bytes moved per second and as a fraction of this
// device's measured device-to-device copy bandwidth, measured in the same
// run. Prints one JSON object per measurement.
//
//   sparta-gpu-bench [--quick]
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <tuple>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "worker/compute/batch_plan.h"
#include "worker/compute/cuda/cuda_backend.h"
#include "worker/data/batch.h"

namespace sparta {
namespace {

#define CHECK_CUDA(call)                                                                      \
  do {                                                                                        \
    cudaError_t e = (call);                                                                   \
    if (e != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

template <typename T>
T* Upload(const std::vector<T>& v) {
  T* d = nullptr;
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&d), std::max<size_t>(v.size(), 1) * sizeof(T)));
  if (!v.empty()) CHECK_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Seconds per call of `fn`, averaged over `reps` after a warm-up, timed with events.
template <typename Fn>
double TimeIt(cudaStream_t stream, int reps, Fn fn) {
  fn();
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  CHECK_CUDA(cudaEventRecord(start, stream));
  for (int i = 0; i < reps; ++i) fn();
  CHECK_CUDA(cudaEventRecord(stop, stream));
  CHECK_CUDA(cudaEventSynchronize(stop));
  float ms = 0;
  CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / 1000.0 / reps;
}

// Device-to-device copy bandwidth (bytes read + written per second).
double CopyBandwidth(cudaStream_t stream, size_t bytes) {
  void *a = nullptr, *b = nullptr;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&b, bytes));
  const double s = TimeIt(stream, 20, [&] { CHECK_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream)); });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / s;
}

// A Criteo-shaped batch: one feature per field, keys skewed toward a
// popular head as click logs are.
Batch MakeBatch(uint32_t examples, uint32_t fields, uint64_t vocab, std::mt19937_64& rng) {
  BatchBuilder builder;
  std::uniform_real_distribution<double> u(0, 1);
  for (uint32_t i = 0; i < examples; ++i) {
    Example ex;
    ex.label = static_cast<float>(i % 2);
    for (uint32_t f = 0; f < fields; ++f) {
      const uint64_t token = static_cast<uint64_t>(std::pow(u(rng), 3.0) * vocab);  // skewed
      ex.features.push_back({(uint64_t{f} << 40) | token, 1.0f, f});
    }
    builder.Add(ex);
  }
  return std::move(*builder.Finish(0));
}

void Run(uint32_t examples, uint32_t k, double copy_bandwidth, cudaStream_t stream, int reps) {
  const uint32_t fields = 39, row_dim = k + 1;
  std::mt19937_64 rng(7);
  const Batch batch = MakeBatch(examples, fields, 200000, rng);
  BatchPlan plan;
  plan.Build(batch);
  const uint32_t nnz = static_cast<uint32_t>(batch.slots.size()), unique = static_cast<uint32_t>(batch.unique_keys.size());
  BatchView v{.size = batch.size, .nnz = nnz, .num_unique = unique, .num_dense = 0,
              .num_bags = static_cast<uint32_t>(plan.bag_rows.size())};
  v.labels = Upload(batch.labels);
  v.offsets = Upload(batch.offsets);
  v.slots = Upload(batch.slots);
  v.values = Upload(batch.values);
  v.fields = Upload(batch.fields);
  v.feature_rows = Upload(plan.feature_rows);
  v.bag_offsets = Upload(plan.bag_offsets);
  v.bag_features = Upload(plan.bag_features);
  v.bag_rows = Upload(plan.bag_rows);
  v.bag_fields = Upload(plan.bag_fields);
  v.key_offsets = Upload(plan.key_offsets);
  v.key_features = Upload(plan.key_features);
  std::vector<float> host_rows(size_t{unique} * row_dim, 0.01f);
  float* rows = Upload(host_rows);
  float* grads = Upload(host_rows);
  const uint32_t stride = fields * k;
  float* out = Upload(std::vector<float>(size_t{examples} * stride, 0.0f));

  CudaBackend backend;
  backend.set_stream(stream);
  const PoolSpec spec{.row_dim = row_dim, .column = 1, .width = k, .num_fields = fields};
  const double gather = TimeIt(stream, reps, [&] { backend.Pool(v, spec, rows, out, stride); });
  const double scatter = TimeIt(stream, reps, [&] { backend.PoolBackward(v, spec, rows, out, stride, grads); });
  if (!backend.error().empty()) {
    std::fprintf(stderr, "backend error: %s\n", backend.error().c_str());
    std::exit(1);
  }
  const double f = sizeof(float);
  // Bytes each kernel must move at least: what it reads and writes once.
  const double gather_bytes = nnz * (k * f + 4 + 4 + 4) + v.num_bags * 12.0 + static_cast<double>(examples) * stride * f * 2;
  const double scatter_bytes = nnz * (k * f + 4 + 4 + 4 + 4) + unique * (4 + 2 * k * f);
  for (auto [name, seconds, bytes] : {std::tuple{"gather", gather, gather_bytes}, std::tuple{"scatter", scatter, scatter_bytes}}) {
    std::printf(
        "{\"kernel\": \"%s\", \"examples\": %u, \"fields\": %u, \"dim\": %u, \"features\": %u, \"unique_keys\": %u, "
        "\"microseconds\": %.2f, \"gb_per_s\": %.1f, \"copy_gb_per_s\": %.1f, \"fraction_of_copy\": %.3f}\n",
        name, examples, fields, k, nnz, unique, seconds * 1e6, bytes / seconds / 1e9, copy_bandwidth / 1e9,
        bytes / seconds / copy_bandwidth);
  }
}

}  // namespace
}  // namespace sparta

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "sparta-gpu-bench: no usable GPU\n");
    return 77;
  }
  cudaDeviceProp props{};
  cudaGetDeviceProperties(&props, 0);
  std::fprintf(stderr, "device: %s\n", props.name);
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  const double copy = sparta::CopyBandwidth(stream, size_t{1} << (quick ? 26 : 30));
  for (uint32_t examples : {4096u, 65536u}) {
    for (uint32_t k : {8u, 32u}) sparta::Run(examples, k, copy, stream, quick ? 5 : 50);
  }
  return 0;
}
