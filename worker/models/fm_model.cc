// Factorization machine (Rendle 2010), degree 2:
//   z = b + sum_i w_i x_i + 1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2]
// computed in O(k * nnz) per example. Each key's row in "fm.wv" is
// [w, v_1..v_k] so one pull fetches both; "fm.bias" is dense.
#include <algorithm>
#include <vector>

#include "worker/models/loss.h"
#include "worker/models/model.h"

namespace sparta {

class FactorizationMachine final : public Model {
 public:
  FactorizationMachine(int k, float init_scale, uint64_t seed) : k_(k), init_scale_(init_scale), seed_(seed) {}

  std::vector<TableDecl> Tables() const override {
    pb::InitializerSpec init;
    init.set_type(pb::InitializerSpec::UNIFORM);
    init.set_scale(init_scale_);
    init.set_seed(seed_);
    return {TableDecl{.name = "fm.wv", .kind = pb::TableSpec::SPARSE, .dim = static_cast<uint32_t>(k_ + 1),
                      .initializer = init},
            TableDecl{.name = "fm.bias", .kind = pb::TableSpec::DENSE, .dim = 1, .dense_size = 1}};
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

std::unique_ptr<Model> NewFactorizationMachine(int k, float init_scale, uint64_t seed) {
  return std::make_unique<FactorizationMachine>(k, init_scale, seed);
}

}  // namespace sparta
