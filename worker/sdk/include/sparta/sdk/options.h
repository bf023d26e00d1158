// Options: the string options a plugin is created with, read with typed
// getters.
//
// The worker fills it from the job's YAML: a model plugin sees the
// `model.options` mapping plus the typed model keys (embedding_dim,
// init_scale, seed, bottom_mlp, top_mlp); a reader plugin sees
// `data.options`. A getter given a malformed value returns the default and
// remembers the first such problem, which error() reports, so a factory can
// read every option and then check once.
//
// Header-only. Getters are const and may be called from one thread at a
// time (the error is recorded in a mutable member).
#ifndef SPARTA_SDK_OPTIONS_H_
#define SPARTA_SDK_OPTIONS_H_

#include <charconv>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparta {

class Options {
 public:
  Options() = default;
  explicit Options(std::map<std::string, std::string> values) : values_(std::move(values)) {}

  bool Has(const std::string& key) const { return values_.count(key) != 0; }
  const std::map<std::string, std::string>& values() const { return values_; }
  void Set(const std::string& key, std::string value) { values_[key] = std::move(value); }

  std::string String(const std::string& key, std::string fallback) const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }

  int64_t Int(const std::string& key, int64_t fallback) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    int64_t v;
    if (!ParseInt(it->second, &v)) return Bad(key, "an integer", fallback);
    return v;
  }

  double Double(const std::string& key, double fallback) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    const std::string& s = it->second;
    char* end = nullptr;
    const double v = s.empty() ? 0 : std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size()) return Bad(key, "a number", fallback);
    return v;
  }

  // "64,32", "64 32" or "[64, 32]"; "" or "[]" is the empty list.
  std::vector<int64_t> IntList(const std::string& key, std::vector<int64_t> fallback) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    std::vector<int64_t> out;
    std::string_view s = it->second;
    size_t pos = 0;
    while (pos < s.size()) {
      while (pos < s.size() && (s[pos] == '[' || s[pos] == ']' || s[pos] == ',' || s[pos] == ' ')) ++pos;
      size_t end = pos;
      while (end < s.size() && s[end] != ',' && s[end] != ' ' && s[end] != ']') ++end;
      if (end == pos) break;
      int64_t v;
      if (!ParseInt(s.substr(pos, end - pos), &v)) return Bad(key, "a list of integers", fallback);
      out.push_back(v);
      pos = end;
    }
    return out;
  }

  // The first malformed option read so far ("" if none).
  const std::string& error() const { return error_; }

 private:
  static bool ParseInt(std::string_view s, int64_t* v) {
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
    return !s.empty() && ec == std::errc() && ptr == s.data() + s.size();
  }
  template <class T>
  T Bad(const std::string& key, const char* expected, T fallback) const {
    if (error_.empty()) error_ = "option '" + key + "': expected " + expected + "; got '" + values_.at(key) + "'";
    return fallback;
  }

  std::map<std::string, std::string> values_;
  mutable std::string error_;
};

}  // namespace sparta

#endif  // SPARTA_SDK_OPTIONS_H_
