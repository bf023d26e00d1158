#include "worker/data/line_parser.h"

#include "absl/strings/str_cat.h"

namespace sparta {

absl::StatusOr<std::unique_ptr<LineParser>> NewLineParser(const std::string& format) {
  if (format == "criteo") return NewCriteoParser();
  if (format == "libsvm") return NewLibsvmParser();
  return absl::InvalidArgumentError(absl::StrCat("unknown data format '", format, "'"));
}

}  // namespace sparta
