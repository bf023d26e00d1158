// LineParser: turns one line of an input file into an Example. One parser
// per input format; stateless apart from scratch space, so each reader
// thread owns its own instance (not thread-safe).
#ifndef SPARTA_WORKER_DATA_LINE_PARSER_H_
#define SPARTA_WORKER_DATA_LINE_PARSER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "worker/data/batch.h"

namespace sparta {

class LineParser {
 public:
  virtual ~LineParser() = default;
  // Fills `ex` (cleared first). A malformed line is an InvalidArgument error
  // saying what is wrong; the caller adds file and line.
  virtual absl::Status Parse(std::string_view line, Example* ex) = 0;
};

// Criteo's TSV: label, 13 integer features, 26 hexadecimal categorical
// tokens; an empty field is a missing value.
std::unique_ptr<LineParser> NewCriteoParser();

// libsvm: "label index:value index:value ..." (label > 0 is a click).
std::unique_ptr<LineParser> NewLibsvmParser();

// "criteo" or "libsvm".
absl::StatusOr<std::unique_ptr<LineParser>> NewLineParser(const std::string& format);

}  // namespace sparta

#endif  // SPARTA_WORKER_DATA_LINE_PARSER_H_
