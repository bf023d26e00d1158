// The example plugin's two factories (see plugin.cc).
#ifndef SPARTA_EXAMPLE_EXAMPLE_H_
#define SPARTA_EXAMPLE_EXAMPLE_H_

#include <string>

#include "sparta/sdk/plugin.h"

namespace example {

sparta::Reader* NewCsvReader(const sparta::Options& options, std::string* error);
sparta::Model* NewCrossLr(const sparta::ModelContext& context, std::string* error);

}  // namespace example

#endif  // SPARTA_EXAMPLE_EXAMPLE_H_
