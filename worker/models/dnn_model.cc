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
// Everything runs on the compute backend (cpu or cuda); activations live in
// the backend's per-thread scratch, so one instance serves any number of
// compute threads.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "sparta/sdk/model.h"
#include "worker/models/builtin_models.h"

namespace sparta {
namespace {

struct Layer {
  uint32_t in = 0, out = 0;
  size_t table = 0;  // index into Tables()
  bool relu = true;
};

// y = act(x W + b). x: rows x in, W: in x out, then b (out).
void Forward(ComputeBackend& backend, const Layer& layer, const float* params, const float* x, uint32_t rows,
             float* y) {
  backend.Gemm(false, false, rows, layer.out, layer.in, 1.0f, x, layer.in, params, layer.out, 0.0f, y, layer.out);
  backend.BiasActivation(y, params + size_t{layer.in} * layer.out, rows, layer.out,
                         layer.relu ? Activation::kRelu : Activation::kNone);
}

// Given dL/dy in `dy` (rows x out; the activation already folded in),
// writes dL/dW and dL/db into `grads` and, if `dx` is not null, dL/dx.
void Backward(ComputeBackend& backend, const Layer& layer, const float* params, const float* x, const float* dy,
              uint32_t rows, float* grads, float* dx) {
  backend.Gemm(true, false, layer.in, layer.out, rows, 1.0f, x, layer.in, dy, layer.out, 0.0f, grads, layer.out);
  backend.ColumnSums(dy, rows, layer.out, grads + size_t{layer.in} * layer.out);
  if (dx != nullptr) {
    backend.Gemm(false, true, rows, layer.in, layer.out, 1.0f, dy, layer.out, params, layer.out, 0.0f, dx, layer.in);
  }
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

  bool runs_on_backend() const override { return true; }

  void ComputeOn(ComputeBackend& backend, const BatchView& batch, const ParamSpans& params, const GradSpans* grads,
                 float* probs) const override {
    const uint32_t rows = batch.size;
    const uint32_t emb_width = fields_ * k_;
    const uint32_t concat = emb_width + bottom_width_;
    const float* emb = params[0].data();
    const PoolSpec wide{.row_dim = k_ + 1, .column = 0, .width = 1};
    const PoolSpec fields{.row_dim = k_ + 1, .column = 1, .width = k_, .num_fields = fields_};

    // acts[l]: the input of layer l (bottom layers first, then top), and last the logits.
    std::vector<const float*> acts(bottom_.size() + top_.size() + 2);
    // Bottom MLP over the dense features (zero-padded if the reader has fewer).
    if (batch.num_dense == num_dense_) {
      acts[0] = batch.dense;
    } else {
      float* padded = backend.Scratch(size_t{rows} * num_dense_);
      backend.Fill(padded, size_t{rows} * num_dense_, 0.0f);
      if (batch.num_dense > 0) {
        backend.CopyColumns(batch.dense, rows, std::min(batch.num_dense, num_dense_), batch.num_dense, padded,
                            num_dense_);
      }
      acts[0] = padded;
    }
    for (size_t l = 0; l < bottom_.size(); ++l) {
      float* y = backend.Scratch(size_t{rows} * bottom_[l].out);
      Forward(backend, bottom_[l], params[bottom_[l].table].data(), acts[l], rows, y);
      acts[l + 1] = y;
    }
    // The top's input: [pooled embeddings per field, bottom output].
    const size_t top0 = bottom_.size() + 1;
    float* x = backend.Scratch(size_t{rows} * concat);
    backend.Pool(batch, fields, emb, x, concat);
    if (bottom_width_ > 0) {
      backend.CopyColumns(acts[bottom_.size()], rows, bottom_width_, bottom_width_, x + emb_width, concat);
    }
    acts[top0] = x;
    float* logits = nullptr;  // the output layer's y
    for (size_t l = 0; l < top_.size(); ++l) {
      logits = backend.Scratch(size_t{rows} * top_[l].out);
      Forward(backend, top_[l], params[top_[l].table].data(), acts[top0 + l], rows, logits);
      acts[top0 + l + 1] = logits;
    }
    float* wide_sum = backend.Scratch(rows);
    backend.Pool(batch, wide, emb, wide_sum, 1);
    backend.Axpy(rows, 1.0f, wide_sum, logits);
    float* dlogits = grads != nullptr ? backend.Scratch(rows) : nullptr;
    backend.Logistic(logits, batch.labels, rows, probs, dlogits);
    if (grads == nullptr) return;

    // Back through the top MLP, down to its input.
    float* dy = dlogits;
    for (size_t l = top_.size(); l-- > 0;) {
      const Layer& layer = top_[l];
      float* dx = backend.Scratch(size_t{rows} * layer.in);
      Backward(backend, layer, params[layer.table].data(), acts[top0 + l], dy, rows, (*grads)[layer.table].data(),
               dx);
      // The input of top layer l > 0 is a ReLU output. That of layer 0 is
      // [embeddings, bottom]; the bottom MLP masks its own part below.
      if (l > 0) backend.ActivationBackward(acts[top0 + l], dx, size_t{rows} * layer.in, Activation::kRelu);
      dy = dx;
    }
    const float* dconcat = dy;

    // Embedding and wide gradients, merged per unique key.
    float* gemb = (*grads)[0].data();
    backend.PoolBackward(batch, fields, emb, dconcat, concat, gemb);
    backend.PoolBackward(batch, wide, emb, dlogits, 1, gemb);

    // Back through the bottom MLP.
    if (bottom_.empty()) return;
    dy = backend.Scratch(size_t{rows} * bottom_width_);
    backend.CopyColumns(dconcat + emb_width, rows, bottom_width_, concat, dy, bottom_width_);
    for (size_t l = bottom_.size(); l-- > 0;) {
      const Layer& layer = bottom_[l];
      backend.ActivationBackward(acts[l + 1], dy, size_t{rows} * layer.out, Activation::kRelu);
      float* dx = l > 0 ? backend.Scratch(size_t{rows} * layer.in) : nullptr;
      Backward(backend, layer, params[layer.table].data(), acts[l], dy, rows, (*grads)[layer.table].data(), dx);
      dy = dx;
    }
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
