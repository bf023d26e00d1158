#include "worker/compute/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "sparta/sdk/logistic.h"

namespace sparta {

void CpuBackend::ResetScratch() { next_block_ = 0; }

float* CpuBackend::Scratch(size_t floats) {
  floats = std::max<size_t>(floats, 1);
  // Reuse the next block if it is large enough; otherwise replace it. Blocks
  // are requested in the same order every batch, so this settles quickly.
  if (next_block_ < blocks_.size() && block_sizes_[next_block_] < floats) {
    blocks_[next_block_].reset(new float[floats]);
    block_sizes_[next_block_] = floats;
  } else if (next_block_ == blocks_.size()) {
    blocks_.emplace_back(new float[floats]);
    block_sizes_.push_back(floats);
  }
  return blocks_[next_block_++].get();
}

void CpuBackend::Fill(float* x, size_t n, float value) { std::fill(x, x + n, value); }

void CpuBackend::Pool(const BatchView& batch, const PoolSpec& spec, const float* rows, float* out,
                      uint32_t out_stride) {
  const uint32_t pools = std::max(spec.num_fields, 1u);
  for (uint32_t i = 0; i < batch.size; ++i) {
    float* o = out + size_t{i} * out_stride;
    std::fill(o, o + size_t{pools} * spec.width, 0.0f);
    for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) {
      uint32_t pool = 0;
      if (spec.num_fields > 0) {
        pool = batch.fields[f];
        if (pool >= spec.num_fields) continue;
      }
      const float* r = rows + size_t{batch.slots[f]} * spec.row_dim + spec.column;
      const float x = batch.values[f];
      float* e = o + size_t{pool} * spec.width;
      if (spec.square) {
        for (uint32_t c = 0; c < spec.width; ++c) e[c] += (x * r[c]) * (x * r[c]);
      } else {
        for (uint32_t c = 0; c < spec.width; ++c) e[c] += x * r[c];
      }
    }
  }
}

// Scattered example by example: on a CPU the rows a batch touches stay in
// cache, so the key plan a GPU needs would only add a pass.
void CpuBackend::PoolBackward(const BatchView& batch, const PoolSpec& spec, const float* rows, const float* dout,
                              uint32_t out_stride, float* grad_rows) {
  for (uint32_t i = 0; i < batch.size; ++i) {
    const float* d = dout + size_t{i} * out_stride;
    for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) {
      uint32_t pool = 0;
      if (spec.num_fields > 0) {
        pool = batch.fields[f];
        if (pool >= spec.num_fields) continue;
      }
      const size_t row = size_t{batch.slots[f]} * spec.row_dim + spec.column;
      float* g = grad_rows + row;
      const float x = batch.values[f];
      const float* dp = d + size_t{pool} * spec.width;
      if (spec.square) {
        const float* r = rows + row;
        for (uint32_t c = 0; c < spec.width; ++c) g[c] += 2 * x * x * r[c] * dp[c];
      } else {
        for (uint32_t c = 0; c < spec.width; ++c) g[c] += x * dp[c];
      }
    }
  }
}

void CpuBackend::Gemm(bool transpose_a, bool transpose_b, uint32_t m, uint32_t n, uint32_t k, float alpha,
                      const float* a, uint32_t lda, const float* b, uint32_t ldb, float beta, float* c, uint32_t ldc) {
  if (batch_invariant_ && m > 1) {
    // Row i of op(A): row i of A, or (transposed) its column i.
    for (uint32_t i = 0; i < m; ++i) {
      cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
                  1, n, k, alpha, transpose_a ? a + i : a + size_t{i} * lda, lda, b, ldb, beta, c + size_t{i} * ldc,
                  ldc);
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void CpuBackend::BiasActivation(float* y, const float* bias, uint32_t rows, uint32_t cols, Activation act) {
  for (uint32_t i = 0; i < rows; ++i) {
    float* row = y + size_t{i} * cols;
    if (act == Activation::kRelu) {
      for (uint32_t j = 0; j < cols; ++j) row[j] = std::max(row[j] + bias[j], 0.0f);
    } else {
      for (uint32_t j = 0; j < cols; ++j) row[j] += bias[j];
    }
  }
}

void CpuBackend::ActivationBackward(const float* y, float* dy, size_t n, Activation act) {
  if (act != Activation::kRelu) return;
  for (size_t i = 0; i < n; ++i) dy[i] = y[i] > 0 ? dy[i] : 0.0f;
}

void CpuBackend::ColumnSums(const float* x, uint32_t rows, uint32_t cols, float* out) {
  std::fill(out, out + cols, 0.0f);
  for (uint32_t i = 0; i < rows; ++i) {
    const float* row = x + size_t{i} * cols;
    for (uint32_t j = 0; j < cols; ++j) out[j] += row[j];
  }
}

void CpuBackend::CopyColumns(const float* src, uint32_t rows, uint32_t cols, uint32_t src_stride, float* dst,
                             uint32_t dst_stride) {
  for (uint32_t i = 0; i < rows; ++i) {
    std::memcpy(dst + size_t{i} * dst_stride, src + size_t{i} * src_stride, sizeof(float) * cols);
  }
}

void CpuBackend::Axpy(size_t n, float alpha, const float* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void CpuBackend::PairwiseInteraction(const float* s, const float* q, uint32_t rows, uint32_t k, float* out) {
  for (uint32_t i = 0; i < rows; ++i) {
    float sum = 0;
    for (uint32_t c = 0; c < k; ++c) {
      const float v = s[size_t{i} * k + c];
      sum += v * v - q[size_t{i} * k + c];
    }
    out[i] += 0.5f * sum;
  }
}

void CpuBackend::PairwiseInteractionBackward(const float* s, const float* g, uint32_t rows, uint32_t k, float* ds,
                                             float* dq) {
  for (uint32_t i = 0; i < rows; ++i) {
    for (uint32_t c = 0; c < k; ++c) {
      ds[size_t{i} * k + c] = g[i] * s[size_t{i} * k + c];
      dq[size_t{i} * k + c] = -0.5f * g[i];
    }
  }
}

void CpuBackend::Logistic(const float* logits, const float* labels, uint32_t n, float* probs, float* dlogits) {
  for (uint32_t i = 0; i < n; ++i) {
    probs[i] = Sigmoid(logits[i]);
    if (dlogits != nullptr) dlogits[i] = probs[i] - labels[i];
  }
}

}  // namespace sparta
