// Reader: turns the records of a worker's input split into Examples.
//
// The worker splits its input files into byte ranges aligned to newlines
// and hands each record (one line, without its '\n') to Parse(). A record
// the reader cannot parse is reported through `error` (what is wrong; the
// worker adds file and line, counts it and goes on, up to
// data.max_bad_lines). The built-in criteo and libsvm readers implement
// this same interface.
//
// Not thread-safe: the worker creates one reader per reading thread.
// Part of the plugin ABI (see plugin.h).
#ifndef SPARTA_SDK_READER_H_
#define SPARTA_SDK_READER_H_

#include <string>
#include <string_view>

#include "sparta/sdk/example.h"
#include "sparta/sdk/model.h"

namespace sparta {

class Reader {
 public:
  virtual ~Reader() = default;

  // Field and dense-feature counts of the examples this reader produces.
  virtual DataSchema schema() const = 0;

  // Fills `ex` (clear it first). Returns false, with `error` set, for a
  // malformed record.
  virtual bool Parse(std::string_view record, Example* ex, std::string* error) = 0;
};

}  // namespace sparta

#endif  // SPARTA_SDK_READER_H_
