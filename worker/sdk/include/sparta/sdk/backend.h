// ComputeBackend: the operations a model runs a batch with, on the CPU
// (OpenBLAS, host memory) or on a GPU (CUDA kernels and cuBLAS, device
// memory). A model written against this interface (Model::ComputeOn) runs
// on either backend unchanged, which is how the built-in lr, fm and dnn work
// and how `worker.backend: cuda` reaches a plugin's model.
//
// Every pointer handed to or returned by a backend lives in that backend's
// memory: host memory for the CPU backend, device memory for CUDA. A model
// never dereferences them itself; it only passes them between operations.
// Operations are enqueued in order and may run asynchronously (on a CUDA
// stream): the worker synchronizes when it needs the results.
//
// Matrices are dense, row-major floats. A backend instance belongs to one
// compute thread; it is not thread-safe. Part of the plugin ABI (plugin.h).
#ifndef SPARTA_SDK_BACKEND_H_
#define SPARTA_SDK_BACKEND_H_

#include <cstddef>
#include <cstdint>

namespace sparta {

// A batch as the backend sees it (see Batch in example.h for the meaning of
// the first arrays), plus the plans the worker computes on the host so that
// pooling and its backward pass need neither sorting nor atomics in the
// backend:
//   bags: the features of each (example, field) pair, for per-field pooling;
//   keys: the features of each unique key, so that the backward pass sums
//         the gradients of a repeated key in one segmented reduction.
struct BatchView {
  uint32_t size = 0;        // examples
  uint32_t nnz = 0;         // features
  uint32_t num_unique = 0;  // distinct keys (rows of a sparse table)
  uint32_t num_dense = 0;   // dense floats per example
  uint32_t num_bags = 0;
  const float* labels = nullptr;      // size
  const uint32_t* offsets = nullptr;  // size + 1: features of example i
  const uint32_t* slots = nullptr;    // nnz: row of the feature's key
  const float* values = nullptr;      // nnz
  const uint32_t* fields = nullptr;   // nnz
  const float* dense = nullptr;       // size * num_dense
  const uint32_t* feature_rows = nullptr;  // nnz: the example a feature belongs to
  const uint32_t* bag_offsets = nullptr;   // num_bags + 1, into bag_features
  const uint32_t* bag_features = nullptr;  // nnz: feature indices grouped by bag
  const uint32_t* bag_rows = nullptr;      // num_bags: example of the bag
  const uint32_t* bag_fields = nullptr;    // num_bags: field of the bag
  const uint32_t* key_offsets = nullptr;   // num_unique + 1, into key_features
  const uint32_t* key_features = nullptr;  // nnz: feature indices grouped by key
};

// Which part of a sparse table's rows a pooling reads, and how.
struct PoolSpec {
  uint32_t row_dim = 1;     // floats per row of the table
  uint32_t column = 0;      // first column pooled
  uint32_t width = 1;       // columns pooled
  uint32_t num_fields = 0;  // 0: one pool per example; F: one per field (fields >= F are skipped)
  bool square = false;      // pool (x * v)^2 instead of x * v
};

enum class Activation { kNone, kRelu };

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;

  virtual const char* name() const = 0;  // "cpu" or "cuda"

  // `floats` of scratch memory, valid until the worker starts the next batch.
  virtual float* Scratch(size_t floats) = 0;
  virtual void Fill(float* x, size_t n, float value) = 0;

  // out[i, p, c] = sum over the features of example i in pool p of x * row[column + c]
  // (or its square), for c < width; p is 0, or the field under per-field pooling.
  // Row i of `out` starts at out + i * out_stride; the op overwrites
  // max(num_fields, 1) * width floats of it.
  virtual void Pool(const BatchView& batch, const PoolSpec& spec, const float* rows, float* out,
                    uint32_t out_stride) = 0;
  // The backward pass of Pool: adds d(loss)/d(rows) to `grad_rows`, given
  // d(loss)/d(out) in `dout` (same layout as Pool's out). `rows` is read
  // only for square pooling.
  virtual void PoolBackward(const BatchView& batch, const PoolSpec& spec, const float* rows, const float* dout,
                            uint32_t out_stride, float* grad_rows) = 0;

  // C = alpha * op(A) * op(B) + beta * C with C m x n, op(A) m x k, op(B) k x n.
  virtual void Gemm(bool transpose_a, bool transpose_b, uint32_t m, uint32_t n, uint32_t k, float alpha,
                    const float* a, uint32_t lda, const float* b, uint32_t ldb, float beta, float* c,
                    uint32_t ldc) = 0;
  // y[i, j] = act(y[i, j] + bias[j]) for a rows x cols matrix.
  virtual void BiasActivation(float* y, const float* bias, uint32_t rows, uint32_t cols, Activation act) = 0;
  // dy *= act'(.), given the activation's output y.
  virtual void ActivationBackward(const float* y, float* dy, size_t n, Activation act) = 0;
  // out[j] = sum_i x[i, j] (a bias gradient).
  virtual void ColumnSums(const float* x, uint32_t rows, uint32_t cols, float* out) = 0;
  // dst[i, 0..cols) = src[i, 0..cols), row strides src_stride and dst_stride.
  virtual void CopyColumns(const float* src, uint32_t rows, uint32_t cols, uint32_t src_stride, float* dst,
                           uint32_t dst_stride) = 0;
  // y += alpha * x.
  virtual void Axpy(size_t n, float alpha, const float* x, float* y) = 0;

  // A factorization machine's pairwise term from s = sum x v and q = sum (x v)^2
  // (rows x k each): out[i] += 1/2 sum_c (s[i,c]^2 - q[i,c]).
  virtual void PairwiseInteraction(const float* s, const float* q, uint32_t rows, uint32_t k, float* out) = 0;
  // Its backward pass given d(loss)/d(out) in g: ds = g * s, dq = -g / 2.
  virtual void PairwiseInteractionBackward(const float* s, const float* g, uint32_t rows, uint32_t k, float* ds,
                                           float* dq) = 0;

  // probs = sigmoid(logits); if dlogits is not null, dlogits = probs - labels,
  // the gradient of the logloss. The worker sums the loss from probs.
  virtual void Logistic(const float* logits, const float* labels, uint32_t n, float* probs, float* dlogits) = 0;
};

}  // namespace sparta

#endif  // SPARTA_SDK_BACKEND_H_
