#include "absl/strings/str_cat.h"
#include "worker/models/model.h"

namespace sparta {

std::unique_ptr<Model> NewLogisticRegression();
std::unique_ptr<Model> NewFactorizationMachine(int k, float init_scale, uint64_t seed);

absl::StatusOr<std::unique_ptr<Model>> CreateModel(const ModelConfig& config) {
  if (config.name == "lr") return NewLogisticRegression();
  if (config.name == "fm") {
    return NewFactorizationMachine(config.embedding_dim, static_cast<float>(config.init_scale),
                                   static_cast<uint64_t>(config.seed));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown model '", config.name, "'"));
}

}  // namespace sparta
