// libsvm / svmlight format. Feature indices are used as keys directly.
#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/data/readers.h"

namespace sparta {
namespace {

bool ParseFloat(std::string_view s, float* out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(*out);
}

class LibsvmParser final : public Reader {
 public:
  DataSchema schema() const override { return {.num_fields = 1, .num_dense = 0}; }

  bool Parse(std::string_view line, Example* ex, std::string* error) override {
    ex->Clear();
    size_t pos = 0;
    bool have_label = false;
    while (pos < line.size()) {
      while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
      if (pos >= line.size() || line[pos] == '#') break;  // trailing comment
      size_t end = pos;
      while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
      std::string_view token = line.substr(pos, end - pos);
      pos = end;
      if (!have_label) {
        float label;
        if (!ParseFloat(token.front() == '+' ? token.substr(1) : token, &label)) {
          return ParseError(error, absl::StrCat("label is not a number: '", std::string(token), "'"));
        }
        ex->label = label > 0 ? 1.0f : 0.0f;
        have_label = true;
        continue;
      }
      const size_t colon = token.find(':');
      if (colon == std::string_view::npos) {
        return ParseError(error, absl::StrCat("expected index:value, got '", std::string(token), "'"));
      }
      if (token.substr(0, colon) == "qid") continue;
      uint64_t index;
      auto [ptr, ec] = std::from_chars(token.data(), token.data() + colon, index);
      float value;
      if (ec != std::errc() || ptr != token.data() + colon || !ParseFloat(token.substr(colon + 1), &value)) {
        return ParseError(error, absl::StrCat("bad feature '", std::string(token), "'"));
      }
      if (value != 0) ex->features.push_back({index, value, 0});
    }
    if (!have_label) return ParseError(error, "empty line");
    return true;
  }
};

}  // namespace

std::unique_ptr<Reader> NewLibsvmReader() { return std::make_unique<LibsvmParser>(); }

}  // namespace sparta
