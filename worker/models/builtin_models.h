// The built-in models. Each is made by a factory of the same signature a
// plugin exports (sparta/sdk/plugin.h), so the built-ins use nothing a user's
// model could not.
#ifndef SPARTA_WORKER_MODELS_BUILTIN_MODELS_H_
#define SPARTA_WORKER_MODELS_BUILTIN_MODELS_H_

#include <string>

#include "sparta/sdk/plugin.h"

namespace sparta {

Model* NewLogisticRegression(const ModelContext& context, std::string* error);
Model* NewFactorizationMachine(const ModelContext& context, std::string* error);
Model* NewDeepNetwork(const ModelContext& context, std::string* error);

// "lr", "fm" or "dnn"; nullptr for another name.
ModelFactory BuiltinModel(const std::string& name);

}  // namespace sparta

#endif  // SPARTA_WORKER_MODELS_BUILTIN_MODELS_H_
