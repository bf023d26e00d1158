// CudaBackend: the ComputeBackend on one GPU. Every pointer it takes or
// hands out is device memory; every operation is enqueued on the stream set
// with set_stream() (kernels of its own, cuBLAS for gemm) and returns at
// once, so a model's whole step is queued before the GPU finishes its first
// kernel. Pooling and its backward pass read the batch plans
// (sparta/sdk/backend.h): one thread per (bag or key, column) sums its
// segment, so repeated keys are merged without atomics and in a fixed order.
//
// Errors (a failed launch, an allocation) do not throw: the first one is
// kept, later operations are skipped, and error() reports it.
//
// Not thread-safe: one instance per compute thread. Owns its cuBLAS handle
// and scratch memory; does not own the stream.
#ifndef SPARTA_WORKER_COMPUTE_CUDA_CUDA_BACKEND_H_
#define SPARTA_WORKER_COMPUTE_CUDA_CUDA_BACKEND_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sparta/sdk/backend.h"

struct cublasContext;

namespace sparta {

class CudaBackend final : public ComputeBackend {
 public:
  CudaBackend();  // on the calling thread's current device
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  void set_stream(cudaStream_t stream);
  // Empty while every operation so far succeeded.
  const std::string& error() const { return error_; }
  void ResetScratch() { next_block_ = 0; }

  // fp16 <-> fp32 on the device (wire.dtype: fp16 crosses PCIe as halves).
  void HalvesToFloats(const uint16_t* halves, size_t n, float* floats);
  void FloatsToHalves(const float* floats, size_t n, uint16_t* halves);

  const char* name() const override { return "cuda"; }
  float* Scratch(size_t floats) override;
  void Fill(float* x, size_t n, float value) override;
  void Pool(const BatchView& batch, const PoolSpec& spec, const float* rows, float* out,
            uint32_t out_stride) override;
  void PoolBackward(const BatchView& batch, const PoolSpec& spec, const float* rows, const float* dout,
                    uint32_t out_stride, float* grad_rows) override;
  void Gemm(bool transpose_a, bool transpose_b, uint32_t m, uint32_t n, uint32_t k, float alpha, const float* a,
            uint32_t lda, const float* b, uint32_t ldb, float beta, float* c, uint32_t ldc) override;
  void BiasActivation(float* y, const float* bias, uint32_t rows, uint32_t cols, Activation act) override;
  void ActivationBackward(const float* y, float* dy, size_t n, Activation act) override;
  void ColumnSums(const float* x, uint32_t rows, uint32_t cols, float* out) override;
  void CopyColumns(const float* src, uint32_t rows, uint32_t cols, uint32_t src_stride, float* dst,
                   uint32_t dst_stride) override;
  void Axpy(size_t n, float alpha, const float* x, float* y) override;
  void PairwiseInteraction(const float* s, const float* q, uint32_t rows, uint32_t k, float* out) override;
  void PairwiseInteractionBackward(const float* s, const float* g, uint32_t rows, uint32_t k, float* ds,
                                   float* dq) override;
  void Logistic(const float* logits, const float* labels, uint32_t n, float* probs, float* dlogits) override;

 private:
  // False (and error() set) if `status` or the last launch failed.
  bool Check(cudaError_t status, const char* what);
  bool CheckLaunch(const char* what) { return Check(cudaGetLastError(), what); }

  cudaStream_t stream_ = nullptr;
  cublasContext* blas_ = nullptr;
  std::string error_;
  // Scratch blocks never move once handed out (see CpuBackend).
  std::vector<float*> blocks_;
  std::vector<size_t> block_sizes_;
  size_t next_block_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_CUDA_CUDA_BACKEND_H_
