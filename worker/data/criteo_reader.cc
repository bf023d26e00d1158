// Criteo display-advertising format. Integer features are bucketized the way
// the winning Criteo/Kaggle solutions did (value v > 2 goes to bucket
// floor(ln(v)^2)), which makes them categorical keys like the tokens; their
// log1p values are also kept as dense features for models that use them.
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "worker/data/readers.h"

namespace sparta {
namespace {

constexpr int kIntegerFields = 13;
constexpr int kCategoricalFields = 26;
constexpr int kFields = 1 + kIntegerFields + kCategoricalFields;

// An integer feature's bucket key and dense value: pure functions of the
// value, so those of small values are read from a table filled once with
// the same expressions (bit-identical results). Criteo's integer features
// are mostly small counts, and the two logarithms per value were about a
// seventh of the reader thread's time (perf, lr at batch 4096, where that
// one thread bounds the job).
struct IntegerFeature {
  uint64_t bucket;
  float dense;
};

IntegerFeature ComputeIntegerFeature(int64_t v) {
  const int64_t bucket = v <= 2 ? v : static_cast<int64_t>(std::pow(std::log(static_cast<double>(v)), 2));
  return {static_cast<uint64_t>(bucket), std::log1p(static_cast<float>(std::max<int64_t>(v, 0)))};
}

IntegerFeature IntegerFeatureOf(int64_t v) {
  constexpr int64_t kTabulated = 4096;  // 48 KiB; 99.99% of generated values, most of Criteo's
  static const std::array<IntegerFeature, kTabulated> table = [] {
    std::array<IntegerFeature, kTabulated> t;
    for (int64_t i = 0; i < kTabulated; ++i) t[i] = ComputeIntegerFeature(i);
    return t;
  }();
  return v >= 0 && v < kTabulated ? table[v] : ComputeIntegerFeature(v);
}

// Each byte's value as a hexadecimal digit, or -1.
constexpr std::array<int8_t, 256> kHexDigits = [] {
  std::array<int8_t, 256> digits{};
  digits.fill(-1);
  for (int c = '0'; c <= '9'; ++c) digits[c] = static_cast<int8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) digits[c] = static_cast<int8_t>(c - 'a' + 10);
  for (int c = 'A'; c <= 'F'; ++c) digits[c] = static_cast<int8_t>(c - 'A' + 10);
  return digits;
}();

// 1 to 16 hexadecimal digits, either case, nothing else (what
// std::from_chars in base 16 accepts whole, where 16 digits cannot
// overflow). A table walk: from_chars' general loop was a fifth of the
// reader thread's time, which bounds lr at batch 4096.
bool ParseHex(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 16) return false;
  uint64_t value = 0;
  for (char c : s) {
    const int8_t digit = kHexDigits[static_cast<unsigned char>(c)];
    if (digit < 0) return false;
    value = value << 4 | static_cast<uint64_t>(digit);
  }
  *out = value;
  return true;
}

class CriteoParser final : public Reader {
 public:
  DataSchema schema() const override { return {.num_fields = kFields - 1, .num_dense = kIntegerFields}; }

  bool Parse(std::string_view line, Example* ex, std::string* error) override {
    ex->Clear();
    ex->dense.assign(kIntegerFields, 0.0f);
    size_t start = 0;
    for (int field = 0; field < kFields; ++field) {
      size_t tab = line.find('\t', start);
      if ((tab == std::string_view::npos) != (field == kFields - 1)) {
        return ParseError(error, 
            tab == std::string_view::npos
                ? absl::StrCat("expected ", kFields, " tab-separated fields, found ", field + 1)
                : absl::StrCat("more than ", kFields, " tab-separated fields"));
      }
      std::string_view value = line.substr(start, tab == std::string_view::npos ? line.npos : tab - start);
      start = tab + 1;
      if (field == 0) {
        if (value != "0" && value != "1") {
          return ParseError(error, absl::StrCat("label must be 0 or 1, got '", std::string(value), "'"));
        }
        ex->label = value == "1" ? 1.0f : 0.0f;
      } else if (value.empty()) {
        continue;  // missing value
      } else if (field <= kIntegerFields) {
        int64_t v;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (ec != std::errc() || ptr != value.data() + value.size()) {
          return ParseError(error, absl::StrCat("integer feature I", field, " is '", std::string(value), "'"));
        }
        const IntegerFeature feature = IntegerFeatureOf(v);
        ex->features.push_back({FeatureKey(field, feature.bucket), 1.0f, static_cast<uint32_t>(field - 1)});
        ex->dense[field - 1] = feature.dense;
      } else {
        uint64_t token;
        if (!ParseHex(value, &token)) {
          return ParseError(error, 
              absl::StrCat("categorical feature C", field - kIntegerFields, " is not hexadecimal: '", std::string(value), "'"));
        }
        ex->features.push_back({FeatureKey(field, token), 1.0f, static_cast<uint32_t>(field - 1)});
      }
    }
    return true;
  }
};

}  // namespace

std::unique_ptr<Reader> NewCriteoReader() { return std::make_unique<CriteoParser>(); }

}  // namespace sparta
