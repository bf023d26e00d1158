// CpuBackend: the ComputeBackend on host memory, with OpenBLAS for the dense
// layers. It is the default backend and the reference the CUDA backend is
// tested against. Operations run synchronously, in the calling thread.
//
// Not thread-safe: one instance per compute thread (it owns that thread's
// scratch memory).
#ifndef SPARTA_WORKER_COMPUTE_CPU_CPU_BACKEND_H_
#define SPARTA_WORKER_COMPUTE_CPU_CPU_BACKEND_H_

#include <memory>
#include <vector>

#include "sparta/sdk/backend.h"

namespace sparta {

class CpuBackend final : public ComputeBackend {
 public:
  const char* name() const override { return "cpu"; }

  // Makes all scratch handed out so far reusable (the worker calls it
  // between batches).
  void ResetScratch();

  // With `on`, Gemm() computes each row of the result alone (a product of
  // one row by the matrix), so a row's value never depends on how many rows
  // share the call: BLAS picks other kernels, and sums in another order, for
  // another row count, so a whole-batch product differs from a one-row
  // product in the last bits. Forward-only steps (a worker's evaluation,
  // sparta-serve) turn it on, so that a served prediction is exactly the
  // evaluated one whatever requests it was batched with; training, which
  // needs no such thing, keeps whole-batch products.
  void set_batch_invariant(bool on) { batch_invariant_ = on; }

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
  bool batch_invariant_ = false;
  // Scratch blocks never move once handed out, so earlier pointers stay
  // valid while later ones are allocated; blocks are reused after a reset.
  std::vector<std::unique_ptr<float[]>> blocks_;
  std::vector<size_t> block_sizes_;
  size_t next_block_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_CPU_CPU_BACKEND_H_
