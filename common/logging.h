// Process-wide logging setup on top of spdlog. Call InitLogging() once at the
// start of main(); afterwards spdlog::info() etc. are thread-safe.
#ifndef SPARTA_COMMON_LOGGING_H_
#define SPARTA_COMMON_LOGGING_H_

#include <string>

#include <spdlog/spdlog.h>

#include "absl/strings/string_view.h"

// Debian's Abseil is built with its own string_view (not std::string_view);
// let log lines format it, e.g. spdlog::warn("{}", status.message()).
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <class FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace sparta {

// Names the process in every line ("server-1") and sets the level
// (trace|debug|info|warn|error). Lines go to stderr.
void InitLogging(const std::string& process_name, const std::string& level);

// Changes the name once the scheduler has assigned a rank.
void SetLogProcessName(const std::string& process_name);

}  // namespace sparta

#endif  // SPARTA_COMMON_LOGGING_H_
