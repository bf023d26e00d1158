// The built-in models' gradients against central finite differences of their
// own loss, and their loss against a direct evaluation.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <random>

#include "sparta/sdk/logistic.h"
#include "sparta/sdk/model.h"
#include "worker/compute/step_runner.h"
#include "worker/data/batch.h"
#include "tests/unit/random_batch.h"
#include "worker/model_tables.h"
#include "worker/models/builtin_models.h"
#include "worker/plugins.h"

namespace sparta::models_test {
namespace {

// Runs `model` on the CPU backend, as a worker with `worker.backend: cpu`
// does. Returns the summed logloss; fills `probs` and, if not null, `grads`.
double Run(const Model& model, const Batch& batch, const std::vector<std::vector<float>>& params,
           std::vector<float>* probs, std::vector<std::vector<float>>* grads) {
  std::vector<RunnerTable> tables;
  for (const TableDecl& t : model.Tables()) {
    tables.push_back({.dense = t.kind == TableKind::kDense, .dense_size = t.dense_size});
  }
  auto runner = NewCpuStepRunner(&model, tables);
  REQUIRE(runner->Submit(1, batch, {params.begin(), params.end()}, grads != nullptr).ok());
  auto out = runner->Collect();
  REQUIRE(out.ok());
  probs->assign(out->probs.begin(), out->probs.end());
  if (grads != nullptr) {
    grads->clear();
    for (const auto& g : out->grads) grads->emplace_back(g.begin(), g.end());
  }
  return out->loss;
}

// Summed logloss of the batch under `params`.
double SumLoss(const Model& model, const Batch& batch, const std::vector<std::vector<float>>& params) {
  std::vector<float> probs;
  return Run(model, batch, params, &probs, nullptr);
}

void CheckGradients(const Model& model, const Batch& batch, std::mt19937& rng) {
  std::vector<std::vector<float>> params;
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (const TableDecl& t : model.Tables()) {
    const size_t n = t.kind == TableKind::kDense ? t.dense_size : batch.unique_keys.size() * t.dim;
    std::vector<float> p(n);
    for (float& x : p) x = normal(rng);
    params.push_back(p);
  }
  std::vector<std::vector<float>> grads;
  std::vector<float> probs;
  const double loss = Run(model, batch, params, &probs, &grads);
  REQUIRE(probs.size() == batch.size);
  double direct = 0;
  for (uint32_t i = 0; i < batch.size; ++i) direct += LogLoss(probs[i], batch.labels[i]);
  REQUIRE(loss == Approx(direct).epsilon(1e-6));

  const double h = 1e-3;
  for (size_t t = 0; t < params.size(); ++t) {
    for (size_t j = 0; j < params[t].size(); ++j) {
      const float saved = params[t][j];
      params[t][j] = saved + h;
      const double up = SumLoss(model, batch, params);
      params[t][j] = saved - h;
      const double down = SumLoss(model, batch, params);
      params[t][j] = saved;
      const double numeric = (up - down) / (2 * h);
      INFO("table " << t << " param " << j);
      REQUIRE(grads[t][j] == Approx(numeric).margin(2e-3).epsilon(2e-2));
    }
  }
}

Options Opts(std::map<std::string, std::string> values) { return Options(std::move(values)); }

std::unique_ptr<Model> Builtin(const std::string& name, Options options, DataSchema schema = {}) {
  std::string error;
  std::unique_ptr<Model> model(BuiltinModel(name)({.options = &options, .schema = schema}, &error));
  INFO(error);
  REQUIRE(model != nullptr);
  return model;
}

TEST_CASE("lr gradients match finite differences") {
  std::mt19937 rng(7);
  CheckGradients(*Builtin("lr", Options()), RandomBatch(16, 12, 4, rng), rng);
}

TEST_CASE("fm gradients match finite differences") {
  std::mt19937 rng(11);
  CheckGradients(*Builtin("fm", Opts({{"embedding_dim", "3"}})), RandomBatch(16, 10, 5, rng), rng);
}

TEST_CASE("dnn gradients match finite differences, through embeddings, both MLPs and the wide term") {
  std::mt19937 rng(13);
  auto model = Builtin("dnn", Opts({{"embedding_dim", "2"}, {"bottom_mlp", "3"}, {"top_mlp", "[4, 3]"}}),
                       {.num_fields = 3, .num_dense = 2});
  // emb + bottom.0 + top.0, top.1, output
  REQUIRE(model->Tables().size() == 5);
  CheckGradients(*model, RandomBatch(12, 9, 4, rng, 3, 2), rng);
}

TEST_CASE("dnn without dense features or bottom MLP still trains its embeddings") {
  std::mt19937 rng(17);
  auto model = Builtin("dnn", Opts({{"embedding_dim", "3"}, {"top_mlp", "5"}}), {.num_fields = 2});
  CheckGradients(*model, RandomBatch(10, 8, 3, rng, 2), rng);
}

TEST_CASE("a model refuses malformed options with the option's name") {
  Options options = Opts({{"embedding_dim", "eight"}});
  std::string error;
  std::unique_ptr<Model> model(NewFactorizationMachine({.options = &options}, &error));
  CHECK(model == nullptr);
  CHECK(error.find("embedding_dim") != std::string::npos);
}

}  // namespace
}  // namespace sparta::models_test

namespace sparta::models_test {
namespace {

// Forward-only scores of `examples` as one batch, on the CPU runner, with
// each key's row from `rows` and the dense tables from `dense`.
std::vector<float> ForwardOnly(const Model& model, const std::vector<Example>& examples,
                               const std::map<uint64_t, std::vector<float>>& rows,
                               const std::vector<std::vector<float>>& dense) {
  BatchBuilder builder;
  for (const Example& ex : examples) builder.Add(ex);
  std::unique_ptr<Batch> batch = builder.Finish(0);
  std::vector<std::vector<float>> params;
  const auto tables = model.Tables();
  for (size_t t = 0; t < tables.size(); ++t) {
    if (tables[t].kind == TableKind::kDense) {
      params.push_back(dense[t]);
      continue;
    }
    std::vector<float>& p = params.emplace_back();
    for (uint64_t key : batch->unique_keys) {
      const std::vector<float>& row = rows.at(key);
      p.insert(p.end(), row.begin(), row.begin() + tables[t].dim);
    }
  }
  std::vector<float> probs;
  Run(model, *batch, params, &probs, nullptr);
  return probs;
}

TEST_CASE("a forward-only step scores each example the same, bit for bit, whatever its batch") {
  // sparta-serve batches requests as they come; its answers must be the
  // worker's evaluation of the same examples in other batches.
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  const DataSchema schema{.num_fields = 6, .num_dense = 5};
  for (const char* name : {"lr", "fm", "dnn"}) {
    INFO(name);
    auto model = Builtin(name, Opts({{"embedding_dim", "8"}, {"bottom_mlp", "[16, 8]"}, {"top_mlp", "[64, 32]"}}),
                         schema);
    std::vector<Example> examples(61);
    std::map<uint64_t, std::vector<float>> rows;
    for (Example& ex : examples) {
      for (uint32_t f = 0; f < schema.num_fields; ++f) {
        const uint64_t key = rng() % 50 + 1000 * f;
        ex.features.push_back({.key = key, .value = 1.0f, .field = f});
        if (!rows.count(key)) {
          for (int j = 0; j < 9; ++j) rows[key].push_back(normal(rng));
        }
      }
      for (uint32_t d = 0; d < schema.num_dense; ++d) ex.dense.push_back(normal(rng));
      ex.label = static_cast<float>(rng() % 2);
    }
    std::vector<std::vector<float>> dense;
    for (const TableDecl& t : model->Tables()) {
      std::vector<float>& d = dense.emplace_back();
      if (t.kind == TableKind::kDense) {
        for (uint64_t j = 0; j < t.dense_size; ++j) d.push_back(normal(rng) * 0.3f);
      }
    }
    const std::vector<float> together = ForwardOnly(*model, examples, rows, dense);
    REQUIRE(together.size() == examples.size());
    for (size_t i = 0; i < examples.size(); ++i) {
      const std::vector<float> alone = ForwardOnly(*model, {examples[i]}, rows, dense);
      INFO("example " << i);
      CHECK(alone[0] == together[i]);  // exactly, not approximately
    }
  }
}

}  // namespace
}  // namespace sparta::models_test

namespace sparta::models_test {
namespace {

TEST_CASE("dnn dense tables default to Adam at 0.005, while a set optimizer.dense_name, lr and fm keep theirs") {
  auto dense_optimizers = [](Config config) {
    auto model = OpenModel(config, DataSchema{.num_fields = 3, .num_dense = 2});
    REQUIRE(model.ok());
    std::vector<std::pair<pb::OptimizerSpec::Type, float>> out;  // the spec's rate is a float
    for (const pb::TableSpec& spec : ModelTableSpecs(**model, config)) {
      if (spec.kind() == pb::TableSpec::DENSE) out.emplace_back(spec.optimizer().type(), spec.optimizer().learning_rate());
    }
    return out;
  };
  Config dnn;
  dnn.model.name = "dnn";
  dnn.optimizer.name = "ftrl";
  dnn.optimizer.learning_rate = 0.05;
  CHECK(UsesDeepDenseDefault(dnn));
  auto tables = dense_optimizers(dnn);
  REQUIRE_FALSE(tables.empty());
  for (const auto& [type, rate] : tables) {
    CHECK(type == pb::OptimizerSpec::ADAM);
    CHECK(rate == static_cast<float>(kDeepDenseLearningRate));
  }
  dnn.optimizer.dense_learning_rate = 0.002;  // its rate wins
  for (const auto& [type, rate] : dense_optimizers(dnn)) CHECK((type == pb::OptimizerSpec::ADAM && rate == 0.002f));
  dnn.optimizer.dense_name = "ftrl";  // the user's choice wins
  CHECK_FALSE(UsesDeepDenseDefault(dnn));
  for (const auto& [type, rate] : dense_optimizers(dnn)) CHECK((type == pb::OptimizerSpec::FTRL && rate == 0.002f));
  Config fm;
  fm.model.name = "fm";
  fm.optimizer.name = "ftrl";
  CHECK_FALSE(UsesDeepDenseDefault(fm));
  for (const auto& [type, rate] : dense_optimizers(fm)) CHECK(type == pb::OptimizerSpec::FTRL);
}

}  // namespace
}  // namespace sparta::models_test
