// Factorization machine (Rendle 2010), degree 2:
//   z = b + sum_i w_i x_i + 1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2]
// computed in O(k * nnz) per example. Each key's row in "fm.wv" is
// [w, v_1..v_k] so one pull fetches both; "fm.bias" is dense.
#include <vector>

#include "sparta/sdk/model.h"
#include "worker/models/builtin_models.h"

namespace sparta {

class FactorizationMachine final : public Model {
 public:
  FactorizationMachine(uint32_t k, float init_scale, uint64_t seed) : k_(k), init_scale_(init_scale), seed_(seed) {}

  std::vector<TableDecl> Tables() const override {
    const InitializerDecl init{.type = InitializerDecl::kUniform, .scale = init_scale_, .seed = seed_};
    return {TableDecl{.name = "fm.wv", .kind = TableKind::kSparse, .dim = static_cast<uint32_t>(k_ + 1),
                      .initializer = init},
            TableDecl{.name = "fm.bias", .kind = TableKind::kDense, .dense_size = 1}};
  }

  bool runs_on_backend() const override { return true; }

  // z = b + wide + 1/2 sum_c (s_c^2 - q_c), with s = sum_i x_i v_i and
  // q = sum_i (x_i v_i)^2 pooled per example; the backward pass of the
  // two poolings gives d z / d v_ic = x_i (s_c - x_i v_ic).
  void ComputeOn(ComputeBackend& backend, const BatchView& batch, const ParamSpans& params, const GradSpans* grads,
                 float* probs) const override {
    const uint32_t dim = k_ + 1, rows = batch.size;
    const PoolSpec wide{.row_dim = dim, .column = 0, .width = 1};
    const PoolSpec sum{.row_dim = dim, .column = 1, .width = k_};
    const PoolSpec squares{.row_dim = dim, .column = 1, .width = k_, .square = true};
    const float* table = params[0].data();
    float* s = backend.Scratch(size_t{rows} * k_);
    float* q = backend.Scratch(size_t{rows} * k_);
    float* logits = backend.Scratch(rows);
    backend.Pool(batch, wide, table, logits, 1);
    backend.Pool(batch, sum, table, s, k_);
    backend.Pool(batch, squares, table, q, k_);
    backend.PairwiseInteraction(s, q, rows, k_, logits);
    backend.BiasActivation(logits, params[1].data(), rows, 1, Activation::kNone);
    float* g = grads != nullptr ? backend.Scratch(rows) : nullptr;
    backend.Logistic(logits, batch.labels, rows, probs, g);
    if (grads == nullptr) return;
    float* grad_table = (*grads)[0].data();
    backend.ColumnSums(g, rows, 1, (*grads)[1].data());
    backend.PoolBackward(batch, wide, table, g, 1, grad_table);
    float* ds = backend.Scratch(size_t{rows} * k_);
    float* dq = backend.Scratch(size_t{rows} * k_);
    backend.PairwiseInteractionBackward(s, g, rows, k_, ds, dq);
    backend.PoolBackward(batch, sum, table, ds, k_, grad_table);
    backend.PoolBackward(batch, squares, table, dq, k_, grad_table);
  }

 private:
  const uint32_t k_;
  const float init_scale_;
  const uint64_t seed_;
};

Model* NewFactorizationMachine(const ModelContext& context, std::string* error) {
  const Options& options = *context.options;
  const int64_t k = options.Int("embedding_dim", 8);
  const double scale = options.Double("init_scale", 0.01);
  const int64_t seed = options.Int("seed", 2024);
  if (!options.error().empty()) return *error = options.error(), nullptr;
  if (k < 1) return *error = "fm: embedding_dim must be at least 1", nullptr;
  return new FactorizationMachine(static_cast<uint32_t>(k), static_cast<float>(scale), static_cast<uint64_t>(seed));
}

}  // namespace sparta
