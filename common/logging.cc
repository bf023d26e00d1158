#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace sparta {

void SetLogProcessName(const std::string& process_name) {
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [" + process_name + "] %^%l%$: %v");
}

void InitLogging(const std::string& process_name, const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("sparta");
  spdlog::set_default_logger(logger);
  SetLogProcessName(process_name);
  spdlog::set_level(spdlog::level::from_str(level));
  // Daemon logs are read while the job runs (and by the launcher after a
  // crash), so every line is flushed at once.
  spdlog::flush_on(spdlog::level::trace);
}

}  // namespace sparta
