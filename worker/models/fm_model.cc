// Factorization machine (Rendle 2010), degree 2:
//   z = b + sum_i w_i x_i + 1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2]
// computed in O(k * nnz) per example. Each key's row in "fm.wv" is
// [w, v_1..v_k] so one pull fetches both; "fm.bias" is dense.
#include <algorithm>
#include <vector>

#include "sparta/sdk/logistic.h"
#include "sparta/sdk/model.h"
#include "worker/models/builtin_models.h"

namespace sparta {

class FactorizationMachine final : public Model {
 public:
  FactorizationMachine(int k, float init_scale, uint64_t seed) : k_(k), init_scale_(init_scale), seed_(seed) {}

  std::vector<TableDecl> Tables() const override {
    const InitializerDecl init{.type = InitializerDecl::kUniform, .scale = init_scale_, .seed = seed_};
    return {TableDecl{.name = "fm.wv", .kind = TableKind::kSparse, .dim = static_cast<uint32_t>(k_ + 1),
                      .initializer = init},
            TableDecl{.name = "fm.bias", .kind = TableKind::kDense, .dense_size = 1}};
  }

  double Compute(const Batch& batch, const ParamSpans& params, const GradSpans* grads,
                 float* probs) const override {
    const uint32_t dim = k_ + 1;
    const float* rows = params[0].data();
    const float bias = params[1][0];
    float* grows = grads ? (*grads)[0].data() : nullptr;
    float* gb = grads ? (*grads)[1].data() : nullptr;
    if (grads) {
      std::fill((*grads)[0].begin(), (*grads)[0].end(), 0.0f);
      gb[0] = 0;
    }
    std::vector<float> sum(k_);  // sum_i v_if x_i
    double loss = 0;
    for (uint32_t i = 0; i < batch.size; ++i) {
      std::fill(sum.begin(), sum.end(), 0.0f);
      float z = bias, sum_sq = 0;
      for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) {
        const float* r = rows + size_t{batch.slots[f]} * dim;
        const float x = batch.values[f];
        z += r[0] * x;
        for (int j = 0; j < k_; ++j) {
          const float vx = r[1 + j] * x;
          sum[j] += vx;
          sum_sq += vx * vx;
        }
      }
      float pair = 0;
      for (int j = 0; j < k_; ++j) pair += sum[j] * sum[j];
      z += 0.5f * (pair - sum_sq);
      const float p = Sigmoid(z);
      probs[i] = p;
      loss += LogLoss(p, batch.labels[i]);
      if (!grads) continue;
      const float g = p - batch.labels[i];
      gb[0] += g;
      for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) {
        const float* r = rows + size_t{batch.slots[f]} * dim;
        float* gr = grows + size_t{batch.slots[f]} * dim;
        const float x = batch.values[f];
        gr[0] += g * x;
        // d z / d v_if = x_i * (sum_f - v_if * x_i)
        for (int j = 0; j < k_; ++j) gr[1 + j] += g * x * (sum[j] - r[1 + j] * x);
      }
    }
    return loss;
  }

 private:
  const int k_;
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
  return new FactorizationMachine(static_cast<int>(k), static_cast<float>(scale), static_cast<uint64_t>(seed));
}

}  // namespace sparta
