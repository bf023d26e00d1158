#include "worker/serving/instance_fields.h"

#include <google/protobuf/struct.pb.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sparta {
namespace {

namespace gp = google::protobuf;

constexpr int kIntegerColumns = 13;
constexpr int kCategoricalColumns = 26;

// Exactly, as the reader will parse it back: 17 significant digits.
std::string Number(double v) {
  char text[40];
  std::snprintf(text, sizeof(text), "%.17g", v);
  return text;
}

absl::StatusOr<std::string> Label(const gp::Value& v) {
  if (v.has_null_value()) return std::string("0");
  if (v.has_number_value() && (v.number_value() == 0 || v.number_value() == 1)) return Number(v.number_value());
  if (v.has_string_value() && (v.string_value() == "0" || v.string_value() == "1")) return v.string_value();
  if (v.has_bool_value()) return std::string(v.bool_value() ? "1" : "0");
  return absl::InvalidArgumentError("field 'label' must be 0 or 1");
}

// A string put into a line must not carry the line's separators.
absl::Status PlainText(std::string_view name, std::string_view text, std::string_view separators) {
  if (text.find_first_of(separators) != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("field '", std::string(name), "' contains a separator of the "
                                                   "input format (tab or newline)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CriteoLine(const gp::Struct& fields) {
  std::vector<std::string> columns(1 + kIntegerColumns + kCategoricalColumns);
  columns[0] = "0";
  for (const auto& [name, value] : fields.fields()) {
    if (name == "label") {
      auto label = Label(value);
      if (!label.ok()) return label.status();
      columns[0] = *label;
      continue;
    }
    int index = 0;
    const bool integer = !name.empty() && name[0] == 'I';
    const bool categorical = !name.empty() && name[0] == 'C';
    const int limit = integer ? kIntegerColumns : kCategoricalColumns;
    if ((!integer && !categorical) || !absl::SimpleAtoi(name.substr(1), &index) || index < 1 || index > limit ||
        name.substr(1) != absl::StrCat(index)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown field '", name, "': a criteo instance has I1-I",
                                                     kIntegerColumns, ", C1-C", kCategoricalColumns,
                                                     " and, optionally, label"));
    }
    std::string& column = columns[integer ? index : kIntegerColumns + index];
    if (value.has_null_value()) continue;  // a missing value, as an empty column
    if (integer && value.has_number_value()) {
      const double v = value.number_value();
      if (!(std::abs(v) < 9e15) || v != std::floor(v)) {
        return absl::InvalidArgumentError(absl::StrCat("field '", name, "' must be an integer"));
      }
      column = absl::StrCat(static_cast<int64_t>(v));
    } else if (value.has_string_value()) {
      if (auto st = PlainText(name, value.string_value(), "\t\r\n"); !st.ok()) return st;
      column = value.string_value();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("field '", name, "' must be ",
                                                     integer ? "an integer" : "a hexadecimal string", " or null"));
    }
  }
  return absl::StrJoin(columns, "\t");
}

absl::StatusOr<std::string> LibsvmLine(const gp::Struct& fields) {
  std::string label = "0";
  std::map<uint64_t, double> features;  // in index order: the same object always reads the same
  for (const auto& [name, value] : fields.fields()) {
    if (name == "label") {
      auto parsed = Label(value);
      if (!parsed.ok()) return parsed.status();
      label = *parsed;
      continue;
    }
    uint64_t index;
    if (!absl::SimpleAtoi(name, &index) || name != absl::StrCat(index)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown field '", name, "': a libsvm instance maps feature "
                                                     "indexes (\"17\") to values and may have a label"));
    }
    if (!value.has_number_value() || !std::isfinite(value.number_value())) {
      return absl::InvalidArgumentError(absl::StrCat("feature '", name, "' must have a number as its value"));
    }
    features[index] = value.number_value();
  }
  std::string line = label;
  for (const auto& [index, value] : features) absl::StrAppend(&line, " ", index, ":", Number(value));
  return line;
}

}  // namespace

absl::StatusOr<std::string> InstanceFieldsToLine(std::string_view format, const gp::Struct& fields) {
  if (format == "criteo") return CriteoLine(fields);
  if (format == "libsvm") return LibsvmLine(fields);
  return absl::InvalidArgumentError(
      "this job reads its input with a reader plugin (data.plugin), whose records have no named fields: send each "
      "instance as a line in the plugin's format");
}

}  // namespace sparta
