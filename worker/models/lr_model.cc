// Logistic regression: p = sigmoid(b + sum_i w[key_i] * x_i).
// Tables: "lr.w" (sparse, dim 1) and "lr.bias" (dense, 1 float).
#include "sparta/sdk/model.h"
#include "worker/models/builtin_models.h"

namespace sparta {

class LogisticRegression final : public Model {
 public:
  std::vector<TableDecl> Tables() const override {
    return {TableDecl{.name = "lr.w", .kind = TableKind::kSparse, .dim = 1},
            TableDecl{.name = "lr.bias", .kind = TableKind::kDense, .dense_size = 1}};
  }

  bool runs_on_backend() const override { return true; }

  void ComputeOn(ComputeBackend& backend, const BatchView& batch, const ParamSpans& params, const GradSpans* grads,
                 float* probs) const override {
    const PoolSpec weights{.row_dim = 1, .column = 0, .width = 1};
    float* logits = backend.Scratch(batch.size);
    backend.Pool(batch, weights, params[0].data(), logits, 1);
    backend.BiasActivation(logits, params[1].data(), batch.size, 1, Activation::kNone);
    float* dlogits = grads != nullptr ? backend.Scratch(batch.size) : nullptr;
    backend.Logistic(logits, batch.labels, batch.size, probs, dlogits);
    if (grads == nullptr) return;
    backend.PoolBackward(batch, weights, params[0].data(), dlogits, 1, (*grads)[0].data());
    backend.ColumnSums(dlogits, batch.size, 1, (*grads)[1].data());
  }
};

Model* NewLogisticRegression(const ModelContext&, std::string*) { return new LogisticRegression(); }

}  // namespace sparta
