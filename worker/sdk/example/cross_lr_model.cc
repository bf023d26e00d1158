// Logistic regression over whatever keys the reader emits (with the CSV
// reader's crosses, a Poly2 model under the hashing trick):
//   p = sigmoid(b + sum_i w[key_i] x_i)
// Tables: "example.w" (sparse, dim 1, zeros) and "example.bias" (dense, 1).
// Option `l2` adds l2 * w to the gradient of each of the batch's keys (an
// L2 penalty applied where a key is seen, as sparse trainers do).
#include <algorithm>
#include <string>
#include <vector>

#include "example.h"
#include "sparta/sdk/logistic.h"

namespace example {
namespace {

class CrossLr final : public sparta::Model {
 public:
  explicit CrossLr(float l2) : l2_(l2) {}

  std::vector<sparta::TableDecl> Tables() const override {
    return {{.name = "example.w", .kind = sparta::TableKind::kSparse, .dim = 1},
            {.name = "example.bias", .kind = sparta::TableKind::kDense, .dense_size = 1}};
  }

  double Compute(const sparta::Batch& batch, const sparta::ParamSpans& params, const sparta::GradSpans* grads,
                 float* probs) const override {
    const float* w = params[0].data();
    const float bias = params[1][0];
    double loss = 0;
    if (grads != nullptr) {
      for (auto& g : *grads) std::fill(g.begin(), g.end(), 0.0f);
    }
    for (uint32_t i = 0; i < batch.size; ++i) {
      float z = bias;
      for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) z += w[batch.slots[f]] * batch.values[f];
      probs[i] = sparta::Sigmoid(z);
      loss += sparta::LogLoss(probs[i], batch.labels[i]);
      if (grads == nullptr) continue;
      const float g = probs[i] - batch.labels[i];
      for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) {
        (*grads)[0][batch.slots[f]] += g * batch.values[f];
      }
      (*grads)[1][0] += g;
    }
    if (l2_ > 0 && grads != nullptr) {
      for (size_t k = 0; k < params[0].size(); ++k) {
        (*grads)[0][k] += l2_ * w[k];
      }
    }
    return loss;
  }

 private:
  const float l2_;
};

}  // namespace

sparta::Model* NewCrossLr(const sparta::ModelContext& context, std::string* error) {
  const double l2 = context.options->Double("l2", 0.0);
  if (!context.options->error().empty()) return *error = context.options->error(), nullptr;
  if (l2 < 0) return *error = "option 'l2' must be >= 0", nullptr;
  return new CrossLr(static_cast<float>(l2));
}

}  // namespace example
