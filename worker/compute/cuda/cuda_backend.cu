// Kernels of the CUDA backend. Each is a grid-stride loop over its output
// elements, so one launch shape serves any batch; none uses atomics, so a
// step computes the same bits every time it runs.
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

__global__ void FillKernel(float* x, size_t n, float value) {
  GRID_STRIDE(i, n) x[i] = value;
}

// out[i, 0 .. pools*width) = 0 for every example (pools without a feature stay 0).
__global__ void ZeroPoolsKernel(float* out, uint32_t rows, uint32_t span, uint32_t stride) {
  GRID_STRIDE(t, size_t{rows} * span) out[t / span * stride + t % span] = 0.0f;
}

// One thread per (example, column): the example's features in one pool.
__global__ void PoolPerExampleKernel(BatchView b, PoolSpec spec, const float* rows, float* out, uint32_t stride) {
  GRID_STRIDE(t, size_t{b.size} * spec.width) {
    const uint32_t i = static_cast<uint32_t>(t / spec.width), c = static_cast<uint32_t>(t % spec.width);
    float sum = 0;
    for (uint32_t f = b.offsets[i]; f < b.offsets[i + 1]; ++f) {
      const float v = b.values[f] * rows[size_t{b.slots[f]} * spec.row_dim + spec.column + c];
      sum += spec.square ? v * v : v;
    }
    out[size_t{i} * stride + c] = sum;
  }
}

// One thread per (bag, column): a bag is one example's features of one field.
__global__ void PoolPerBagKernel(BatchView b, PoolSpec spec, const float* rows, float* out, uint32_t stride) {
  GRID_STRIDE(t, size_t{b.num_bags} * spec.width) {
    const uint32_t bag = static_cast<uint32_t>(t / spec.width), c = static_cast<uint32_t>(t % spec.width);
    const uint32_t field = b.bag_fields[bag];
    if (field >= spec.num_fields) continue;
    float sum = 0;
    for (uint32_t p = b.bag_offsets[bag]; p < b.bag_offsets[bag + 1]; ++p) {
      const uint32_t f = b.bag_features[p];
      const float v = b.values[f] * rows[size_t{b.slots[f]} * spec.row_dim + spec.column + c];
      sum += spec.square ? v * v : v;
    }
    out[size_t{b.bag_rows[bag]} * stride + size_t{field} * spec.width + c] = sum;
  }
}

// One thread per (unique key, column): the segmented reduction of the key's
// features' gradients, in feature order, added to the key's row.
__global__ void PoolBackwardKernel(BatchView b, PoolSpec spec, const float* rows, const float* dout, uint32_t stride,
                                   float* grad_rows) {
  GRID_STRIDE(t, size_t{b.num_unique} * spec.width) {
    const uint32_t key = static_cast<uint32_t>(t / spec.width), c = static_cast<uint32_t>(t % spec.width);
    const size_t at = size_t{key} * spec.row_dim + spec.column + c;
    float sum = 0;
    for (uint32_t p = b.key_offsets[key]; p < b.key_offsets[key + 1]; ++p) {
      const uint32_t f = b.key_features[p];
      uint32_t pool = 0;
      if (spec.num_fields > 0) {
        pool = b.fields[f];
        if (pool >= spec.num_fields) continue;
      }
      const float x = b.values[f];
      const float d = dout[size_t{b.feature_rows[f]} * stride + size_t{pool} * spec.width + c];
      sum += spec.square ? 2 * x * x * rows[at] * d : x * d;
    }
    grad_rows[at] += sum;
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
  if (spec.num_fields == 0) {
    PoolPerExampleKernel<<<BlocksFor(size_t{batch.size} * spec.width), kThreads, 0, stream_>>>(batch, spec, rows, out,
                                                                                              out_stride);
    CheckLaunch("Pool");
    return;
  }
  const uint32_t span = spec.num_fields * spec.width;
  ZeroPoolsKernel<<<BlocksFor(size_t{batch.size} * span), kThreads, 0, stream_>>>(out, batch.size, span, out_stride);
  if (!CheckLaunch("Pool (zero)") || batch.num_bags == 0) return;
  PoolPerBagKernel<<<BlocksFor(size_t{batch.num_bags} * spec.width), kThreads, 0, stream_>>>(batch, spec, rows, out,
                                                                                            out_stride);
  CheckLaunch("Pool (bags)");
}

void CudaBackend::PoolBackward(const BatchView& batch, const PoolSpec& spec, const float* rows, const float* dout,
                               uint32_t out_stride, float* grad_rows) {
  if (!error_.empty() || batch.num_unique == 0) return;
  PoolBackwardKernel<<<BlocksFor(size_t{batch.num_unique} * spec.width), kThreads, 0, stream_>>>(
      batch, spec, rows, dout, out_stride, grad_rows);
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
