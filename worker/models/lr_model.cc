// Logistic regression: p = sigmoid(b + sum_i w[key_i] * x_i).
// Tables: "lr.w" (sparse, dim 1) and "lr.bias" (dense, 1 float).
#include <algorithm>

#include "sparta/sdk/logistic.h"
#include "sparta/sdk/model.h"
#include "worker/models/builtin_models.h"

namespace sparta {

class LogisticRegression final : public Model {
 public:
  std::vector<TableDecl> Tables() const override {
    return {TableDecl{.name = "lr.w", .kind = TableKind::kSparse, .dim = 1},
            TableDecl{.name = "lr.bias", .kind = TableKind::kDense, .dense_size = 1}};
  }

  double Compute(const Batch& batch, const ParamSpans& params, const GradSpans* grads,
                 float* probs) const override {
    const float* w = params[0].data();
    const float bias = params[1][0];
    float* gw = grads ? (*grads)[0].data() : nullptr;
    float* gb = grads ? (*grads)[1].data() : nullptr;
    if (grads) {
      std::fill((*grads)[0].begin(), (*grads)[0].end(), 0.0f);
      gb[0] = 0;
    }
    double loss = 0;
    for (uint32_t i = 0; i < batch.size; ++i) {
      float z = bias;
      for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) z += w[batch.slots[f]] * batch.values[f];
      const float p = Sigmoid(z);
      probs[i] = p;
      loss += LogLoss(p, batch.labels[i]);
      if (!grads) continue;
      const float g = p - batch.labels[i];
      for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) gw[batch.slots[f]] += g * batch.values[f];
      gb[0] += g;
    }
    return loss;
  }
};

Model* NewLogisticRegression(const ModelContext&, std::string*) { return new LogisticRegression(); }

}  // namespace sparta
