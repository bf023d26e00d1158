// A deep CTR network in the style of Wide&Deep and DLRM:
//
//   wide  = sum_i x_i w[key_i]                        (a linear term per key)
//   e_f   = sum_{i in field f} x_i v[key_i]           (one pooled embedding per field)
//   b     = bottom MLP(dense features)                (ReLU layers)
//   logit = wide + top MLP([e_1 .. e_F, b])           (ReLU hidden layers, linear output)
//
// Tables: "dnn.emb" (sparse, a row [w, v_1..v_k] per key, so one pull
// fetches both the wide and the deep parameters) and one dense table per MLP
// layer ("dnn.bottom.<i>", "dnn.top.<i>"), holding W (in x out, row-major)
// then b (out), drawn from U(-1/sqrt(in), 1/sqrt(in)) as PyTorch's Linear
// does. Dense layers run on OpenBLAS (cblas_sgemm).
//
// Compute() keeps its activations in thread-local scratch, so one instance
// serves any number of compute threads.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "sparta/sdk/logistic.h"
#include "sparta/sdk/model.h"
#include "worker/models/builtin_models.h"

namespace sparta {
namespace {

struct Layer {
  uint32_t in = 0, out = 0;
  size_t table = 0;  // index into Tables()
  bool relu = true;
};

// Per-thread buffers, grown to the largest batch seen.
struct Scratch {
  std::vector<std::vector<float>> acts;  // acts[l]: input of layer l (B x in); the last is the output
  std::vector<float> grad_out, grad_in;
  std::vector<float> wide;
};

// y = x W + b, then ReLU if asked. x: rows x in, W: in x out.
void Forward(const Layer& layer, const float* params, const float* x, uint32_t rows, float* y) {
  const float* w = params;
  const float* b = params + size_t{layer.in} * layer.out;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, layer.out, layer.in, 1.0f, x, layer.in, w, layer.out,
              0.0f, y, layer.out);
  for (uint32_t i = 0; i < rows; ++i) {
    float* row = y + size_t{i} * layer.out;
    for (uint32_t j = 0; j < layer.out; ++j) {
      const float v = row[j] + b[j];
      row[j] = layer.relu ? std::max(v, 0.0f) : v;
    }
  }
}

// Given dL/dy in `dy` (rows x out; ReLU already folded in), writes dL/dW and
// dL/db into `grads` and, if `dx` is not null, dL/dx (rows x in).
void Backward(const Layer& layer, const float* params, const float* x, const float* dy, uint32_t rows, float* grads,
              float* dx) {
  const float* w = params;
  float* gw = grads;
  float* gb = grads + size_t{layer.in} * layer.out;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, layer.in, layer.out, rows, 1.0f, x, layer.in, dy, layer.out,
              0.0f, gw, layer.out);
  std::fill(gb, gb + layer.out, 0.0f);
  for (uint32_t i = 0; i < rows; ++i) {
    const float* row = dy + size_t{i} * layer.out;
    for (uint32_t j = 0; j < layer.out; ++j) gb[j] += row[j];
  }
  if (dx != nullptr) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, layer.in, layer.out, 1.0f, dy, layer.out, w, layer.out,
                0.0f, dx, layer.in);
  }
}

// dL/dy of a ReLU layer: zero where the unit was off.
void MaskRelu(const float* y, size_t n, float* dy) {
  for (size_t i = 0; i < n; ++i) dy[i] = y[i] > 0 ? dy[i] : 0.0f;
}

class DeepNetwork final : public Model {
 public:
  DeepNetwork(const DataSchema& schema, uint32_t k, float init_scale, uint64_t seed,
              const std::vector<int64_t>& bottom, const std::vector<int64_t>& top)
      : fields_(schema.num_fields), num_dense_(schema.num_dense), k_(k), init_scale_(init_scale), seed_(seed) {
    size_t table = 1;
    uint32_t width = num_dense_;
    if (num_dense_ > 0) {
      for (int64_t units : bottom) {
        bottom_.push_back({width, static_cast<uint32_t>(units), table++, true});
        width = static_cast<uint32_t>(units);
      }
    }
    bottom_width_ = width;
    width = fields_ * k_ + bottom_width_;
    for (int64_t units : top) {
      top_.push_back({width, static_cast<uint32_t>(units), table++, true});
      width = static_cast<uint32_t>(units);
    }
    top_.push_back({width, 1, table++, false});
  }

  std::vector<TableDecl> Tables() const override {
    std::vector<TableDecl> tables;
    tables.push_back({.name = "dnn.emb",
                      .kind = TableKind::kSparse,
                      .dim = k_ + 1,
                      .initializer = {.type = InitializerDecl::kUniform, .scale = init_scale_, .seed = seed_}});
    auto add = [&](const std::vector<Layer>& layers, const char* prefix) {
      for (size_t l = 0; l < layers.size(); ++l) {
        const Layer& layer = layers[l];
        tables.push_back({.name = std::string(prefix) + std::to_string(l),
                          .kind = TableKind::kDense,
                          .dense_size = (uint64_t{layer.in} + 1) * layer.out,
                          .initializer = {.type = InitializerDecl::kUniform,
                                          .scale = 1.0f / std::sqrt(static_cast<float>(layer.in)),
                                          .seed = seed_ + layer.table}});
      }
    };
    add(bottom_, "dnn.bottom.");
    add(top_, "dnn.top.");
    return tables;
  }

  double Compute(const Batch& batch, const ParamSpans& params, const GradSpans* grads, float* probs) const override {
    thread_local Scratch s;
    const uint32_t rows = batch.size;
    const uint32_t row_dim = k_ + 1;
    const uint32_t emb_width = fields_ * k_;
    const uint32_t concat = emb_width + bottom_width_;
    const float* emb = params[0].data();

    // Bottom MLP over the dense features.
    s.acts.resize(bottom_.size() + top_.size() + 2);
    std::vector<float>& dense_in = s.acts[0];
    dense_in.assign(size_t{rows} * num_dense_, 0.0f);
    if (batch.num_dense > 0) {
      const uint32_t n = std::min(batch.num_dense, num_dense_);
      for (uint32_t i = 0; i < rows; ++i) {
        std::copy_n(batch.dense.data() + size_t{i} * batch.num_dense, n, dense_in.data() + size_t{i} * num_dense_);
      }
    }
    for (size_t l = 0; l < bottom_.size(); ++l) {
      s.acts[l + 1].resize(size_t{rows} * bottom_[l].out);
      Forward(bottom_[l], params[bottom_[l].table].data(), s.acts[l].data(), rows, s.acts[l + 1].data());
    }
    const std::vector<float>& bottom_out = s.acts[bottom_.size()];

    // Pooled embeddings and the wide term, then [embeddings, bottom] as the top's input.
    const size_t top0 = bottom_.size() + 1;
    std::vector<float>& x = s.acts[top0];
    x.assign(size_t{rows} * concat, 0.0f);
    s.wide.assign(rows, 0.0f);
    for (uint32_t i = 0; i < rows; ++i) {
      float* xi = x.data() + size_t{i} * concat;
      float wide = 0;
      for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) {
        const float* r = emb + size_t{batch.slots[f]} * row_dim;
        const float v = batch.values[f];
        wide += v * r[0];
        const uint32_t field = batch.fields[f];
        if (field >= fields_) continue;  // a field the schema does not have: wide term only
        float* e = xi + size_t{field} * k_;
        for (uint32_t j = 0; j < k_; ++j) e[j] += v * r[1 + j];
      }
      s.wide[i] = wide;
      std::copy_n(bottom_out.data() + size_t{i} * bottom_width_, bottom_width_, xi + emb_width);
    }
    for (size_t l = 0; l < top_.size(); ++l) {
      s.acts[top0 + l + 1].resize(size_t{rows} * top_[l].out);
      Forward(top_[l], params[top_[l].table].data(), s.acts[top0 + l].data(), rows, s.acts[top0 + l + 1].data());
    }
    const float* logits = s.acts[top0 + top_.size()].data();

    double loss = 0;
    s.grad_out.resize(rows);
    for (uint32_t i = 0; i < rows; ++i) {
      const float p = Sigmoid(logits[i] + s.wide[i]);
      probs[i] = p;
      loss += LogLoss(p, batch.labels[i]);
      s.grad_out[i] = p - batch.labels[i];
      s.wide[i] = s.grad_out[i];  // from here on: dL/dlogit, the wide term's gradient
    }
    if (grads == nullptr) return loss;

    // Back through the top MLP, down to its input.
    for (size_t l = top_.size(); l-- > 0;) {
      const Layer& layer = top_[l];
      s.grad_in.resize(size_t{rows} * layer.in);
      Backward(layer, params[layer.table].data(), s.acts[top0 + l].data(), s.grad_out.data(), rows,
               (*grads)[layer.table].data(), s.grad_in.data());
      // The input of top layer l > 0 is a ReLU output. That of layer 0 is
      // [embeddings, bottom]; the bottom MLP masks its own part below.
      if (l > 0) MaskRelu(s.acts[top0 + l].data(), s.grad_in.size(), s.grad_in.data());
      std::swap(s.grad_in, s.grad_out);
    }
    const std::vector<float>& dx = s.grad_out;  // rows x concat

    // Embedding and wide gradients, scattered to the batch's unique keys.
    float* gemb = (*grads)[0].data();
    std::fill((*grads)[0].begin(), (*grads)[0].end(), 0.0f);
    for (uint32_t i = 0; i < rows; ++i) {
      const float* dxi = dx.data() + size_t{i} * concat;
      const float g = s.wide[i];
      for (uint32_t f = batch.offsets[i]; f < batch.offsets[i + 1]; ++f) {
        float* gr = gemb + size_t{batch.slots[f]} * row_dim;
        const float v = batch.values[f];
        gr[0] += v * g;
        const uint32_t field = batch.fields[f];
        if (field >= fields_) continue;
        const float* de = dxi + size_t{field} * k_;
        for (uint32_t j = 0; j < k_; ++j) gr[1 + j] += v * de[j];
      }
    }

    // Back through the bottom MLP.
    if (!bottom_.empty()) {
      std::vector<float>& dy = s.grad_in;
      dy.resize(size_t{rows} * bottom_width_);
      for (uint32_t i = 0; i < rows; ++i) {
        std::copy_n(dx.data() + size_t{i} * concat + emb_width, bottom_width_, dy.data() + size_t{i} * bottom_width_);
      }
      std::vector<float>& scratch = s.grad_out;  // dx has been consumed
      for (size_t l = bottom_.size(); l-- > 0;) {
        const Layer& layer = bottom_[l];
        MaskRelu(s.acts[l + 1].data(), size_t{rows} * layer.out, dy.data());
        if (l > 0) scratch.resize(size_t{rows} * layer.in);
        Backward(layer, params[layer.table].data(), s.acts[l].data(), dy.data(), rows, (*grads)[layer.table].data(),
                 l > 0 ? scratch.data() : nullptr);
        if (l > 0) std::swap(dy, scratch);
      }
    }
    return loss;
  }

 private:
  const uint32_t fields_, num_dense_, k_;
  const float init_scale_;
  const uint64_t seed_;
  std::vector<Layer> bottom_, top_;  // top_ ends with the linear output layer
  uint32_t bottom_width_ = 0;
};

}  // namespace

Model* NewDeepNetwork(const ModelContext& context, std::string* error) {
  const Options& options = *context.options;
  const int64_t k = options.Int("embedding_dim", 8);
  const double scale = options.Double("init_scale", 0.01);
  const int64_t seed = options.Int("seed", 2024);
  const std::vector<int64_t> bottom = options.IntList("bottom_mlp", {32, 8});
  const std::vector<int64_t> top = options.IntList("top_mlp", {128, 64});
  if (!options.error().empty()) return *error = "dnn: " + options.error(), nullptr;
  if (k < 1 || k > 4096) return *error = "dnn: embedding_dim must be in [1, 4096]", nullptr;
  for (int64_t units : bottom) {
    if (units < 1) return *error = "dnn: bottom_mlp layers need at least one unit", nullptr;
  }
  for (int64_t units : top) {
    if (units < 1) return *error = "dnn: top_mlp layers need at least one unit", nullptr;
  }
  if (context.schema.num_fields == 0) return *error = "dnn: the reader declares no fields", nullptr;
  return new DeepNetwork(context.schema, static_cast<uint32_t>(k), static_cast<float>(scale),
                         static_cast<uint64_t>(seed), bottom, top);
}

}  // namespace sparta
