// The built-in readers (sparta/sdk/reader.h), and the choice between them
// and a reader plugin.
#ifndef SPARTA_WORKER_DATA_READERS_H_
#define SPARTA_WORKER_DATA_READERS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "sparta/sdk/reader.h"

namespace sparta {

// Criteo's TSV: label, 13 integer features, 26 hexadecimal categorical
// tokens; an empty field is a missing value. 39 fields, 13 dense floats.
std::unique_ptr<Reader> NewCriteoReader();

// libsvm: "label index:value index:value ..." (label > 0 is a click). One
// field, no dense features.
std::unique_ptr<Reader> NewLibsvmReader();

// A reader's way out of Parse(): records what is wrong, returns false.
inline bool ParseError(std::string* error, std::string what) {
  *error = std::move(what);
  return false;
}

// Makes one reader per reading thread.
using ReaderMaker = std::function<absl::StatusOr<std::unique_ptr<Reader>>()>;

}  // namespace sparta

#endif  // SPARTA_WORKER_DATA_READERS_H_
