#include "server/optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace sparta {
namespace {

// w -= lr * (g + l2 * w)
class Sgd final : public Optimizer {
 public:
  explicit Sgd(const pb::OptimizerSpec& s) : lr_(s.learning_rate()), l2_(s.l2()) {}
  uint32_t StateFloats(uint32_t) const override { return 0; }
  void InitState(float*, uint32_t) const override {}
  void Apply(float* __restrict w, const float* __restrict g, uint32_t dim) const override {
    for (uint32_t j = 0; j < dim; ++j) w[j] -= lr_ * (g[j] + l2_ * w[j]);
  }

 private:
  const float lr_, l2_;
};

// Duchi et al. 2011: acc += g^2; w -= lr * g / (sqrt(acc) + eps).
class Adagrad final : public Optimizer {
 public:
  explicit Adagrad(const pb::OptimizerSpec& s)
      : lr_(s.learning_rate()), init_(s.initial_accumulator()), eps_(s.epsilon()), l2_(s.l2()) {}
  uint32_t StateFloats(uint32_t dim) const override { return dim; }
  void InitState(float* row, uint32_t dim) const override {
    for (uint32_t j = 0; j < dim; ++j) row[dim + j] = init_;
  }
  void Apply(float* __restrict row, const float* __restrict grad, uint32_t dim) const override {
    float* __restrict w = row;
    float* __restrict acc = row + dim;
    for (uint32_t j = 0; j < dim; ++j) {
      const float g = grad[j] + l2_ * w[j];
      acc[j] += g * g;
      w[j] -= lr_ * g / (std::sqrt(acc[j]) + eps_);
    }
  }

 private:
  const float lr_, init_, eps_, l2_;
};

// McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches",
// per-coordinate FTRL-Proximal. Row: [w][z][n]; w is kept materialized so a
// pull is a plain copy.
class Ftrl final : public Optimizer {
 public:
  explicit Ftrl(const pb::OptimizerSpec& s)
      : alpha_(s.learning_rate()), beta_(s.ftrl_beta()), l1_(s.l1()), l2_(s.l2()) {}
  uint32_t StateFloats(uint32_t dim) const override { return 2 * dim; }
  void InitState(float* row, uint32_t dim) const override {
    // Choose z so that the closed form below reproduces the initial weight:
    // random embedding initializations survive the first update.
    for (uint32_t j = 0; j < dim; ++j) {
      const float w = row[j];
      row[dim + j] = w == 0 ? 0 : -w * (beta_ / alpha_ + l2_) - (w > 0 ? l1_ : -l1_);
      row[2 * dim + j] = 0;
    }
  }
  void Apply(float* __restrict row, const float* __restrict grad, uint32_t dim) const override {
    float* __restrict w = row;
    float* __restrict z = row + dim;
    float* __restrict n = row + 2 * dim;
    for (uint32_t j = 0; j < dim; ++j) {
      const float g = grad[j];
      const float n_new = n[j] + g * g;
      const float sigma = (std::sqrt(n_new) - std::sqrt(n[j])) / alpha_;
      z[j] += g - sigma * w[j];
      n[j] = n_new;
      const float zj = z[j];
      const float shrunk = zj > l1_ ? zj - l1_ : (zj < -l1_ ? zj + l1_ : 0.0f);
      const float denominator = (beta_ + std::sqrt(n_new)) / alpha_ + l2_;
      // With beta = l2 = 0 a coordinate that has only seen zero gradients has
      // no curvature yet: it stays at zero.
      w[j] = denominator > 0 ? -shrunk / denominator : 0.0f;
    }
  }

 private:
  const float alpha_, beta_, l1_, l2_;
};

// Kingma & Ba 2015, with a per-row step count (the "lazy" Adam of sparse
// embedding systems: a row's moments decay only when the row is updated).
// Row: [w][m][v][t].
class Adam final : public Optimizer {
 public:
  explicit Adam(const pb::OptimizerSpec& s)
      : lr_(s.learning_rate()), b1_(s.beta1()), b2_(s.beta2()), eps_(s.epsilon()), l2_(s.l2()) {}
  uint32_t StateFloats(uint32_t dim) const override { return 2 * dim + 1; }
  void InitState(float* row, uint32_t dim) const override {
    for (uint32_t j = dim; j < 3 * dim + 1; ++j) row[j] = 0;
  }
  void Apply(float* __restrict row, const float* __restrict grad, uint32_t dim) const override {
    float* __restrict w = row;
    float* __restrict m = row + dim;
    float* __restrict v = row + 2 * dim;
    float& t = row[3 * dim];
    t += 1;
    const float step = lr_ * std::sqrt(1 - std::pow(b2_, t)) / (1 - std::pow(b1_, t));
    for (uint32_t j = 0; j < dim; ++j) {
      const float g = grad[j] + l2_ * w[j];
      m[j] = b1_ * m[j] + (1 - b1_) * g;
      v[j] = b2_ * v[j] + (1 - b2_) * g * g;
      w[j] -= step * m[j] / (std::sqrt(v[j]) + eps_);
    }
  }

 private:
  const float lr_, b1_, b2_, eps_, l2_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Optimizer>> Optimizer::Create(const pb::OptimizerSpec& spec) {
  if (!(spec.learning_rate() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer learning_rate must be > 0, got ", spec.learning_rate()));
  }
  switch (spec.type()) {
    case pb::OptimizerSpec::SGD: return std::make_unique<Sgd>(spec);
    case pb::OptimizerSpec::ADAGRAD: return std::make_unique<Adagrad>(spec);
    case pb::OptimizerSpec::FTRL: return std::make_unique<Ftrl>(spec);
    case pb::OptimizerSpec::ADAM: return std::make_unique<Adam>(spec);
    default: return absl::InvalidArgumentError(absl::StrCat("unknown optimizer type ", spec.type()));
  }
}

}  // namespace sparta
