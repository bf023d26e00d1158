#include "worker/model_tables.h"

#include <algorithm>

namespace sparta {
namespace {

// A table's optimizer: what the model declared, else the job's (for dense
// tables, optimizer.dense_* where set, else the deep model's default).
pb::OptimizerSpec OptimizerFor(const TableDecl& decl, const OptimizerConfig& c, bool deep_default) {
  const bool dense = decl.kind == TableKind::kDense;
  std::string name = !decl.optimizer.name.empty()      ? decl.optimizer.name
                     : dense && !c.dense_name.empty() ? c.dense_name
                     : dense && deep_default          ? std::string(kDeepDenseOptimizer)
                                                      : c.name;
  double learning_rate = decl.optimizer.learning_rate >= 0    ? decl.optimizer.learning_rate
                         : dense && c.dense_learning_rate > 0 ? c.dense_learning_rate
                         : dense && deep_default              ? kDeepDenseLearningRate
                                                              : c.learning_rate;
  pb::OptimizerSpec spec;
  if (name == "sgd") spec.set_type(pb::OptimizerSpec::SGD);
  if (name == "adagrad") spec.set_type(pb::OptimizerSpec::ADAGRAD);
  if (name == "ftrl") spec.set_type(pb::OptimizerSpec::FTRL);
  if (name == "adam") spec.set_type(pb::OptimizerSpec::ADAM);
  spec.set_learning_rate(learning_rate);
  spec.set_initial_accumulator(c.initial_accumulator);
  spec.set_epsilon(c.epsilon);
  spec.set_beta1(c.beta1);
  spec.set_beta2(c.beta2);
  spec.set_l1(c.l1);
  spec.set_l2(c.l2);
  spec.set_ftrl_beta(c.ftrl_beta);
  return spec;
}

// Dense tables are stored as blocks of at most this many floats each, which
// spread over the shards like sparse rows.
constexpr uint64_t kDenseBlockFloats = 16384;

}  // namespace

bool UsesDeepDenseDefault(const Config& config) {
  return config.model.plugin.empty() && config.model.name == "dnn" && config.optimizer.dense_name.empty();
}

std::vector<pb::TableSpec> ModelTableSpecs(const Model& model, const Config& config) {
  std::vector<pb::TableSpec> specs;
  for (const TableDecl& decl : model.Tables()) {
    pb::TableSpec spec;
    spec.set_id(static_cast<uint32_t>(specs.size()));
    spec.set_name(decl.name);
    const bool dense = decl.kind == TableKind::kDense;
    spec.set_kind(dense ? pb::TableSpec::DENSE : pb::TableSpec::SPARSE);
    spec.set_dim(dense ? static_cast<uint32_t>(std::min<uint64_t>(decl.dense_size, kDenseBlockFloats)) : decl.dim);
    spec.set_dense_size(decl.dense_size);
    auto* init = spec.mutable_initializer();
    init->set_type(static_cast<pb::InitializerSpec::Type>(decl.initializer.type));
    init->set_scale(decl.initializer.scale);
    init->set_seed(decl.initializer.seed);
    *spec.mutable_optimizer() = OptimizerFor(decl, config.optimizer, UsesDeepDenseDefault(config));
    specs.push_back(spec);
  }
  return specs;
}

}  // namespace sparta
