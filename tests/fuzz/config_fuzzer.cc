// libFuzzer target: config files (YAML) through the loader every daemon
// uses. A config is accepted or refused with a message that names the file;
// nothing else may happen.
#include <cstdlib>
#include <string>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = sparta::ParseConfig(text, "fuzz.yaml", {});
  if (!config.ok() && std::string(config.status().message()).find("fuzz.yaml") == std::string::npos) std::abort();
  if (config.ok()) (void)sparta::ConfigToJson(*config);
  return 0;
}
