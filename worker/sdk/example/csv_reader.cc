// A reader for categorical CSV: "label,token,token,...", one column per
// field, an empty column a missing value. Each token becomes the key
// hash(column, token). With option `crosses: n`, every pair of the first n
// columns also becomes a key hash(pair, token_a, token_b), the classic
// hashing-trick cross that lets a linear model learn pairwise interactions.
//
// Options: columns (required: categorical columns per line), crosses (0).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "example.h"

namespace example {
namespace {

// 64-bit FNV-1a, then a finalizer: stable across runs and machines.
uint64_t Hash(uint64_t seed, std::string_view bytes) {
  uint64_t h = 1469598103934665603ULL ^ (seed * 0x9e3779b97f4a7c15ULL);
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  return h ^ (h >> 33);
}

class CsvReader final : public sparta::Reader {
 public:
  CsvReader(uint32_t columns, uint32_t crosses) : columns_(columns), crosses_(crosses) {}

  sparta::DataSchema schema() const override {
    return {.num_fields = columns_ + crosses_ * (crosses_ - 1) / 2, .num_dense = 0};
  }

  bool Parse(std::string_view line, sparta::Example* ex, std::string* error) override {
    ex->Clear();
    tokens_.clear();
    size_t start = 0;
    while (true) {
      const size_t comma = line.find(',', start);
      tokens_.push_back(line.substr(start, comma == std::string_view::npos ? line.npos : comma - start));
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    if (tokens_.size() != columns_ + 1) {
      *error = "expected a label and " + std::to_string(columns_) + " columns, found " +
               std::to_string(tokens_.size()) + " fields";
      return false;
    }
    if (tokens_[0] != "0" && tokens_[0] != "1") {
      *error = "label must be 0 or 1, got '" + std::string(tokens_[0]) + "'";
      return false;
    }
    ex->label = tokens_[0] == "1" ? 1.0f : 0.0f;
    for (uint32_t c = 0; c < columns_; ++c) {
      if (!tokens_[c + 1].empty()) ex->features.push_back({Hash(c, tokens_[c + 1]), 1.0f, c});
    }
    uint32_t field = columns_;
    for (uint32_t a = 0; a < crosses_; ++a) {
      for (uint32_t b = a + 1; b < crosses_; ++b, ++field) {
        if (tokens_[a + 1].empty() || tokens_[b + 1].empty()) continue;
        const uint64_t key = Hash(Hash(1000 + field, tokens_[a + 1]), tokens_[b + 1]);
        ex->features.push_back({key, 1.0f, field});
      }
    }
    return true;
  }

 private:
  const uint32_t columns_, crosses_;
  std::vector<std::string_view> tokens_;
};

}  // namespace

sparta::Reader* NewCsvReader(const sparta::Options& options, std::string* error) {
  const int64_t columns = options.Int("columns", 0);
  const int64_t crosses = options.Int("crosses", 0);
  if (!options.error().empty()) return *error = options.error(), nullptr;
  if (columns < 1) return *error = "option 'columns' (categorical columns per line) must be at least 1", nullptr;
  if (crosses < 0 || crosses > columns) return *error = "option 'crosses' must be in [0, columns]", nullptr;
  return new CsvReader(static_cast<uint32_t>(columns), static_cast<uint32_t>(crosses));
}

}  // namespace example
