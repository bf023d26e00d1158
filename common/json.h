// Minimal JSON writing for the small files daemons emit (info, summary).
// Header-only, stateless, thread-safe.
#ifndef SPARTA_COMMON_JSON_H_
#define SPARTA_COMMON_JSON_H_

#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace sparta {

inline std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

inline std::string JsonQuote(absl::string_view s) { return JsonQuote(std::string_view(s.data(), s.size())); }
inline std::string JsonQuote(const char* s) { return JsonQuote(std::string_view(s)); }
inline std::string JsonQuote(const std::string& s) { return JsonQuote(std::string_view(s)); }

inline std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

}  // namespace sparta

#endif  // SPARTA_COMMON_JSON_H_
