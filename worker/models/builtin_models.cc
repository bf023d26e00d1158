#include "worker/models/builtin_models.h"

namespace sparta {

ModelFactory BuiltinModel(const std::string& name) {
  if (name == "lr") return NewLogisticRegression;
  if (name == "fm") return NewFactorizationMachine;
  if (name == "dnn") return NewDeepNetwork;
  return nullptr;
}

}  // namespace sparta
