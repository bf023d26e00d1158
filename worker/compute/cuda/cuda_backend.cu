// Kernels of the CUDA backend. Each is a grid-stride loop over its output
// elements, so one launch shape serves any batch. No sum depends on the order
// in which threads run (the one atomic lists long keys, whose order does not
// matter), so a step computes the same bits every time it runs.
#include "worker/compute/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

namespace sparta {
namespace {

constexpr int kThreads = 256;

// Enough blocks to fill an H100 several times over, never more than needed.
unsigned BlocksFor(size_t n) {
  const size_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::min<size_t>(std::max<size_t>(blocks, 1), 4096));
}

#define GRID_STRIDE(i, n) \
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < (n); i += size_t{gridDim.x} * blockDim.x)

// The pooling kernels index (row, column) pairs as one number and split it by
// the row width, once per element. A 64-bit division by a runtime value is a
// long software routine on the GPU, and it cost these kernels more time than
// their memory traffic; this divides a number below 2^31 with one multiply,
// one add and one shift (the round-up method of Granlund and Montgomery).
struct FastDivmod {
  uint32_t divisor = 1, multiplier = 1, shift = 0;

  static FastDivmod Of(uint32_t d) {
    FastDivmod f;
    f.divisor = d;
    while ((uint64_t{1} << f.shift) < d) ++f.shift;
    f.multiplier = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << f.shift) - d)) / d + 1);
    return f;
  }
  __device__ __forceinline__ uint32_t Divide(uint32_t n) const { return (__umulhi(n, multiplier) + n) >> shift; }
};

// The pooling kernels index their elements with 32 bits (see FastDivmod).
constexpr size_t kMaxPoolElements = size_t{1} << 31;

#define GRID_STRIDE_32(i, n) \
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

__global__ void FillKernel(float* x, size_t n, float value) {
  GRID_STRIDE(i, n) x[i] = value;
}

// out[i, 0 .. pools*width) = 0 for every example (pools without a feature stay 0).
__global__ void ZeroPoolsKernel(float* out, uint32_t rows, FastDivmod span, uint32_t stride) {
  GRID_STRIDE_32(t, rows * span.divisor) {
    const uint32_t row = span.Divide(t);
    out[size_t{row} * stride + (t - row * span.divisor)] = 0.0f;
  }
}

// One thread per (example, column): the example's features in one pool.
__global__ void PoolPerExampleKernel(BatchView b, PoolSpec spec, FastDivmod width, const float* rows, float* out,
                                     uint32_t stride) {
  GRID_STRIDE_32(t, b.size * spec.width) {
    const uint32_t i = width.Divide(t), c = t - i * spec.width;
    float sum = 0;
    for (uint32_t f = b.offsets[i]; f < b.offsets[i + 1]; ++f) {
      const float v = b.values[f] * rows[size_t{b.slots[f]} * spec.row_dim + spec.column + c];
      sum += spec.square ? v * v : v;
    }
    out[size_t{i} * stride + c] = sum;
  }
}

// Columns one pooling thread computes. The gather and the scatter are chains
// of dependent index loads (offsets, feature, slot) ending in a row; a thread
// per column would repeat the whole chain for every column it adds. A thread
// per run of up to eight columns walks the chain once and then issues the
// row's loads together.
constexpr uint32_t kColumnsPerThread = 8;

// Keys with more features than this are summed by a whole block
// (LongKeysBackward): in click logs a popular key appears in
// thousands of examples, and one thread walking them would leave the whole
// kernel waiting on it.
constexpr uint32_t kLongKey = 32;

uint32_t ColumnRuns(uint32_t width) { return (width + kColumnsPerThread - 1) / kColumnsPerThread; }

// One thread per (bag, run of columns). A bag is one example's features of
// one field; its sum runs in feature order.
__global__ void PoolPerBagKernel(BatchView b, PoolSpec spec, FastDivmod runs, const float* rows, float* out,
                                 uint32_t stride) {
  GRID_STRIDE_32(t, b.num_bags * runs.divisor) {
    const uint32_t bag = runs.Divide(t), c0 = (t - bag * runs.divisor) * kColumnsPerThread;
    const uint32_t field = b.bag_fields[bag];
    if (field >= spec.num_fields) continue;
    const uint32_t n = min(kColumnsPerThread, spec.width - c0);
    float sum[kColumnsPerThread] = {};
    for (uint32_t p = b.bag_offsets[bag], end = b.bag_offsets[bag + 1]; p < end; ++p) {
      const uint32_t f = b.bag_features[p];
      const float x = b.values[f];
      const float* row = rows + size_t{b.slots[f]} * spec.row_dim + spec.column + c0;
#pragma unroll
      for (uint32_t j = 0; j < kColumnsPerThread; ++j) {
        if (j < n) {
          const float v = x * row[j];
          sum[j] += spec.square ? v * v : v;
        }
      }
    }
    float* o = out + size_t{b.bag_rows[bag]} * stride + size_t{field} * spec.width + c0;
#pragma unroll
    for (uint32_t j = 0; j < kColumnsPerThread; ++j) {
      if (j < n) o[j] = sum[j];
    }
  }
}

// Adds to sum[0, n) the gradients feature f sends to columns c0 .. c0 + n of
// its key's row (whose values are row_values, for the squared pooling).
__device__ __forceinline__ void AddFeatureGradients(const BatchView& b, const PoolSpec& spec, const float* dout,
                                                    uint32_t stride, uint32_t f, uint32_t c0, uint32_t n,
                                                    const float* row_values, float* sum) {
  uint32_t pool = 0;
  if (spec.num_fields > 0) {
    pool = b.fields[f];
    if (pool >= spec.num_fields) return;
  }
  const float x = b.values[f];
  const float* d = dout + size_t{b.feature_rows[f]} * stride + size_t{pool} * spec.width + c0;
#pragma unroll
  for (uint32_t j = 0; j < kColumnsPerThread; ++j) {
    if (j < n) sum[j] += spec.square ? 2 * x * x * row_values[j] * d[j] : x * d[j];
  }
}

// One thread per (unique key, run of columns) of the keys with at most
// kLongKey features: the segmented reduction of the key's features'
// gradients, in feature order, added to the key's row. Threads `thread` of
// `threads` in all.
__device__ void ShortKeysBackward(const BatchView& b, const PoolSpec& spec, FastDivmod runs, const float* rows,
                                  const float* dout, uint32_t stride, float* grad_rows, uint32_t thread,
                                  uint32_t threads) {
  for (uint32_t t = thread; t < b.num_unique * runs.divisor; t += threads) {
    const uint32_t key = runs.Divide(t), c0 = (t - key * runs.divisor) * kColumnsPerThread;
    const uint32_t begin = b.key_offsets[key], end = b.key_offsets[key + 1];
    if (end - begin > kLongKey) continue;
    const uint32_t n = min(kColumnsPerThread, spec.width - c0);
    const size_t at = size_t{key} * spec.row_dim + spec.column + c0;
    float row_values[kColumnsPerThread] = {}, sum[kColumnsPerThread] = {};
    if (spec.square) {
#pragma unroll
      for (uint32_t j = 0; j < kColumnsPerThread; ++j) row_values[j] = j < n ? rows[at + j] : 0.0f;
    }
    for (uint32_t p = begin; p < end; ++p) {
      AddFeatureGradients(b, spec, dout, stride, b.key_features[p], c0, n, row_values, sum);
    }
#pragma unroll
    for (uint32_t j = 0; j < kColumnsPerThread; ++j) {
      if (j < n) grad_rows[at + j] += sum[j];
    }
  }
}

// The keys with more than kLongKey features, one at a time per block: block
// `block` of `blocks` scans kThreads keys at a time, lists the long ones, and
// sums each with all its threads. It scans keys block, block + blocks, ...:
// the popular keys come first in a batch's key order, and a block that
// scanned a contiguous range would get most of them. The threads form groups
// of one thread per run of columns; group g takes the key's features g,
// g + groups, ... and a fixed tree adds the groups, so the sum has the same
// order on every run.
__device__ void LongKeysBackward(const BatchView& b, const PoolSpec& spec, const float* rows, const float* dout,
                                 uint32_t stride, float* grad_rows, uint32_t block, uint32_t blocks) {
  __shared__ uint32_t long_keys[kThreads];
  __shared__ uint32_t found;
  __shared__ float partial[kColumnsPerThread][kThreads];
  const uint32_t runs = (spec.width + kColumnsPerThread - 1) / kColumnsPerThread;
  const uint32_t lanes = runs < kThreads ? runs : kThreads;
  const uint32_t groups = kThreads / lanes, group = threadIdx.x / lanes, lane = threadIdx.x % lanes;
  uint32_t tree = 1;
  while (tree < groups) tree *= 2;
  for (size_t first = 0; first * blocks < b.num_unique; first += kThreads) {
    if (threadIdx.x == 0) found = 0;
    __syncthreads();
    const size_t key = (first + threadIdx.x) * blocks + block;
    if (key < b.num_unique && b.key_offsets[key + 1] - b.key_offsets[key] > kLongKey) {
      long_keys[atomicAdd(&found, 1u)] = static_cast<uint32_t>(key);
    }
    __syncthreads();
    for (uint32_t i = 0; i < found; ++i) {
      const uint32_t k = long_keys[i], begin = b.key_offsets[k], end = b.key_offsets[k + 1];
      for (uint32_t r0 = 0; r0 < runs; r0 += lanes) {
        const uint32_t c0 = (r0 + lane) * kColumnsPerThread;
        const bool active = group < groups && r0 + lane < runs;
        const uint32_t n = active ? min(kColumnsPerThread, spec.width - c0) : 0;
        const size_t at = size_t{k} * spec.row_dim + spec.column + c0;
        float row_values[kColumnsPerThread] = {}, sum[kColumnsPerThread] = {};
        if (active) {
          if (spec.square) {
#pragma unroll
            for (uint32_t j = 0; j < kColumnsPerThread; ++j) row_values[j] = j < n ? rows[at + j] : 0.0f;
          }
          for (uint32_t p = begin + group; p < end; p += groups) {
            AddFeatureGradients(b, spec, dout, stride, b.key_features[p], c0, n, row_values, sum);
          }
        }
#pragma unroll
        for (uint32_t j = 0; j < kColumnsPerThread; ++j) partial[j][threadIdx.x] = sum[j];
        __syncthreads();
        for (uint32_t half = tree / 2; half > 0; half /= 2) {
          if (active && group < half && group + half < groups) {
#pragma unroll
            for (uint32_t j = 0; j < kColumnsPerThread; ++j) partial[j][threadIdx.x] += partial[j][threadIdx.x + half * lanes];
          }
          __syncthreads();
        }
        if (active && group == 0) {
#pragma unroll
          for (uint32_t j = 0; j < kColumnsPerThread; ++j) {
            if (j < n) grad_rows[at + j] += partial[j][threadIdx.x];
          }
        }
        __syncthreads();
      }
    }
  }
}

// The backward scatter in one launch: the first long_blocks blocks sum the
// long keys, the rest the short ones. The long keys' blocks start first and
// their latency-bound walks overlap the short keys' bandwidth-bound ones;
// each key is summed by exactly one of the two, so the order of blocks does
// not change a bit of the result.
__global__ void PoolBackwardKernel(BatchView b, PoolSpec spec, FastDivmod runs, uint32_t long_blocks,
                                   const float* rows, const float* dout, uint32_t stride, float* grad_rows) {
  if (blockIdx.x < long_blocks) {
    LongKeysBackward(b, spec, rows, dout, stride, grad_rows, blockIdx.x, long_blocks);
  } else {
    ShortKeysBackward(b, spec, runs, rows, dout, stride, grad_rows,
                      (blockIdx.x - long_blocks) * blockDim.x + threadIdx.x, (gridDim.x - long_blocks) * blockDim.x);
  }
}

__global__ void BiasActivationKernel(float* y, const float* bias, uint32_t rows, uint32_t cols, bool relu) {
  GRID_STRIDE(t, size_t{rows} * cols) {
    const float v = y[t] + bias[t % cols];
    y[t] = relu ? fmaxf(v, 0.0f) : v;
  }
}

__global__ void ReluBackwardKernel(const float* y, float* dy, size_t n) {
  GRID_STRIDE(i, n) dy[i] = y[i] > 0 ? dy[i] : 0.0f;
}

// One block per column; a fixed reduction tree, so the sum is deterministic.
__global__ void ColumnSumsKernel(const float* x, uint32_t rows, uint32_t cols, float* out) {
  __shared__ float partial[kThreads];
  const uint32_t col = blockIdx.x;
  float sum = 0;
  for (uint32_t i = threadIdx.x; i < rows; i += blockDim.x) sum += x[size_t{i} * cols + col];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[col] = partial[0];
}

__global__ void AxpyKernel(size_t n, float alpha, const float* x, float* y) {
  GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

__global__ void PairwiseKernel(const float* s, const float* q, uint32_t rows, uint32_t k, float* out) {
  GRID_STRIDE(i, rows) {
    float sum = 0;
    for (uint32_t c = 0; c < k; ++c) {
      const float v = s[i * k + c];
      sum += v * v - q[i * k + c];
    }
    out[i] += 0.5f * sum;
  }
}

__global__ void PairwiseBackwardKernel(const float* s, const float* g, uint32_t rows, uint32_t k, float* ds,
                                       float* dq) {
  GRID_STRIDE(t, size_t{rows} * k) {
    const float gi = g[t / k];
    ds[t] = gi * s[t];
    dq[t] = -0.5f * gi;
  }
}

__global__ void LogisticKernel(const float* logits, const float* labels, uint32_t n, float* probs, float* dlogits) {
  GRID_STRIDE(i, n) {
    const float p = 1.0f / (1.0f + expf(-logits[i]));
    probs[i] = p;
    if (dlogits != nullptr) dlogits[i] = p - labels[i];
  }
}

__global__ void HalvesToFloatsKernel(const __half* in, size_t n, float* out) {
  GRID_STRIDE(i, n) out[i] = __half2float(in[i]);
}

__global__ void FloatsToHalvesKernel(const float* in, size_t n, __half* out) {
  GRID_STRIDE(i, n) out[i] = __float2half_rn(in[i]);
}

}  // namespace

CudaBackend::CudaBackend() {
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    error_ = "cublasCreate failed";
    return;
  }
  blas_ = handle;
}

CudaBackend::~CudaBackend() {
  for (float* block : blocks_) cudaFree(block);
  if (blas_ != nullptr) cublasDestroy(blas_);
}

void CudaBackend::set_stream(cudaStream_t stream) {
  stream_ = stream;
  if (blas_ != nullptr) cublasSetStream(blas_, stream);
}

bool CudaBackend::Check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return true;
  if (error_.empty()) error_ = std::string(what) + ": " + cudaGetErrorString(status);
  return false;
}

float* CudaBackend::Scratch(size_t floats) {
  floats = std::max<size_t>(floats, 1);
  if (next_block_ < blocks_.size() && block_sizes_[next_block_] < floats) {
    // cudaFree waits for the device, so no queued kernel still uses the block.
    cudaFree(blocks_[next_block_]);
    blocks_[next_block_] = nullptr;
    block_sizes_[next_block_] = 0;
  }
  if (next_block_ == blocks_.size()) {
    blocks_.push_back(nullptr);
    block_sizes_.push_back(0);
  }
  if (blocks_[next_block_] == nullptr) {
    float* block = nullptr;
    if (!Check(cudaMalloc(&block, floats * sizeof(float)), "cudaMalloc (scratch)")) return nullptr;
    blocks_[next_block_] = block;
    block_sizes_[next_block_] = floats;
  }
  return blocks_[next_block_++];
}

void CudaBackend::Fill(float* x, size_t n, float value) {
  if (!error_.empty() || n == 0) return;
  FillKernel<<<BlocksFor(n), kThreads, 0, stream_>>>(x, n, value);
  CheckLaunch("Fill");
}

void CudaBackend::Pool(const BatchView& batch, const PoolSpec& spec, const float* rows, float* out,
                       uint32_t out_stride) {
  if (!error_.empty() || batch.size == 0) return;
  const size_t largest = std::max({size_t{batch.size} * spec.width * std::max(spec.num_fields, 1u),
                                   size_t{batch.num_bags} * spec.width});
  if (largest >= kMaxPoolElements) {
    error_ = "Pool: " + std::to_string(largest) + " pooled values is over the 2^31 elements one launch indexes; "
             "use smaller batches";
    return;
  }
  if (spec.num_fields == 0) {
    PoolPerExampleKernel<<<BlocksFor(size_t{batch.size} * spec.width), kThreads, 0, stream_>>>(
        batch, spec, FastDivmod::Of(spec.width), rows, out, out_stride);
    CheckLaunch("Pool");
    return;
  }
  const uint32_t span = spec.num_fields * spec.width;
  ZeroPoolsKernel<<<BlocksFor(size_t{batch.size} * span), kThreads, 0, stream_>>>(out, batch.size,
                                                                                   FastDivmod::Of(span), out_stride);
  if (!CheckLaunch("Pool (zero)") || batch.num_bags == 0) return;
  const uint32_t runs = ColumnRuns(spec.width);
  PoolPerBagKernel<<<BlocksFor(size_t{batch.num_bags} * runs), kThreads, 0, stream_>>>(
      batch, spec, FastDivmod::Of(runs), rows, out, out_stride);
  CheckLaunch("Pool (bags)");
}

void CudaBackend::PoolBackward(const BatchView& batch, const PoolSpec& spec, const float* rows, const float* dout,
                               uint32_t out_stride, float* grad_rows) {
  if (!error_.empty() || batch.num_unique == 0) return;
  if (size_t{batch.num_unique} * spec.width >= kMaxPoolElements) {
    error_ = "PoolBackward: " + std::to_string(batch.num_unique) + " keys x " + std::to_string(spec.width) +
             " columns is over the 2^31 elements one launch indexes; use smaller batches";
    return;
  }
  const uint32_t runs = ColumnRuns(spec.width);
  // Long keys are few (a batch's popular keys): a block per kThreads keys
  // scanned, at most a thousand blocks.
  const uint32_t long_blocks = std::min<uint32_t>((batch.num_unique + kThreads - 1) / kThreads, 1024);
  PoolBackwardKernel<<<long_blocks + BlocksFor(size_t{batch.num_unique} * runs), kThreads, 0, stream_>>>(
      batch, spec, FastDivmod::Of(runs), long_blocks, rows, dout, out_stride, grad_rows);
  CheckLaunch("PoolBackward");
}

// cuBLAS is column-major: a row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T, so the operands swap and nothing is transposed.
void CudaBackend::Gemm(bool transpose_a, bool transpose_b, uint32_t m, uint32_t n, uint32_t k, float alpha,
                       const float* a, uint32_t lda, const float* b, uint32_t ldb, float beta, float* c,
                       uint32_t ldc) {
  if (!error_.empty() || m == 0 || n == 0) return;
  if (blas_ == nullptr) {
    error_ = "no cuBLAS handle";
    return;
  }
  const cublasStatus_t status =
      cublasSgemm(blas_, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                  &alpha, b, ldb, a, lda, &beta, c, ldc);
  if (status != CUBLAS_STATUS_SUCCESS && error_.empty()) {
    error_ = "cublasSgemm failed with status " + std::to_string(static_cast<int>(status));
  }
}

void CudaBackend::BiasActivation(float* y, const float* bias, uint32_t rows, uint32_t cols, Activation act) {
  if (!error_.empty() || rows == 0) return;
  BiasActivationKernel<<<BlocksFor(size_t{rows} * cols), kThreads, 0, stream_>>>(y, bias, rows, cols,
                                                                                 act == Activation::kRelu);
  CheckLaunch("BiasActivation");
}

void CudaBackend::ActivationBackward(const float* y, float* dy, size_t n, Activation act) {
  if (!error_.empty() || n == 0 || act != Activation::kRelu) return;
  ReluBackwardKernel<<<BlocksFor(n), kThreads, 0, stream_>>>(y, dy, n);
  CheckLaunch("ActivationBackward");
}

void CudaBackend::ColumnSums(const float* x, uint32_t rows, uint32_t cols, float* out) {
  if (!error_.empty() || cols == 0) return;
  ColumnSumsKernel<<<cols, kThreads, 0, stream_>>>(x, rows, cols, out);
  CheckLaunch("ColumnSums");
}

void CudaBackend::CopyColumns(const float* src, uint32_t rows, uint32_t cols, uint32_t src_stride, float* dst,
                              uint32_t dst_stride) {
  if (!error_.empty() || rows == 0 || cols == 0) return;
  Check(cudaMemcpy2DAsync(dst, size_t{dst_stride} * sizeof(float), src, size_t{src_stride} * sizeof(float),
                          size_t{cols} * sizeof(float), rows, cudaMemcpyDeviceToDevice, stream_),
        "CopyColumns");
}

void CudaBackend::Axpy(size_t n, float alpha, const float* x, float* y) {
  if (!error_.empty() || n == 0) return;
  AxpyKernel<<<BlocksFor(n), kThreads, 0, stream_>>>(n, alpha, x, y);
  CheckLaunch("Axpy");
}

void CudaBackend::PairwiseInteraction(const float* s, const float* q, uint32_t rows, uint32_t k, float* out) {
  if (!error_.empty() || rows == 0) return;
  PairwiseKernel<<<BlocksFor(rows), kThreads, 0, stream_>>>(s, q, rows, k, out);
  CheckLaunch("PairwiseInteraction");
}

void CudaBackend::PairwiseInteractionBackward(const float* s, const float* g, uint32_t rows, uint32_t k, float* ds,
                                              float* dq) {
  if (!error_.empty() || rows == 0) return;
  PairwiseBackwardKernel<<<BlocksFor(size_t{rows} * k), kThreads, 0, stream_>>>(s, g, rows, k, ds, dq);
  CheckLaunch("PairwiseInteractionBackward");
}

void CudaBackend::Logistic(const float* logits, const float* labels, uint32_t n, float* probs, float* dlogits) {
  if (!error_.empty() || n == 0) return;
  LogisticKernel<<<BlocksFor(n), kThreads, 0, stream_>>>(logits, labels, n, probs, dlogits);
  CheckLaunch("Logistic");
}

void CudaBackend::HalvesToFloats(const uint16_t* halves, size_t n, float* floats) {
  if (!error_.empty() || n == 0) return;
  HalvesToFloatsKernel<<<BlocksFor(n), kThreads, 0, stream_>>>(reinterpret_cast<const __half*>(halves), n, floats);
  CheckLaunch("HalvesToFloats");
}

void CudaBackend::FloatsToHalves(const float* floats, size_t n, uint16_t* halves) {
  if (!error_.empty() || n == 0) return;
  FloatsToHalvesKernel<<<BlocksFor(n), kThreads, 0, stream_>>>(floats, n, reinterpret_cast<__half*>(halves));
  CheckLaunch("FloatsToHalves");
}

}  // namespace sparta
