// SplitReader: reads the lines of a worker's file ranges and parses them
// with a Reader (built-in or plugin).
//
// A malformed line is skipped and counted; the first ones are logged with
// file and line number; more than `max_bad_lines` of them is an error. Line
// numbers of a range that starts inside a file are found lazily (by counting
// the newlines before it) only when a bad line needs reporting. Not
// thread-safe; one reader per thread.
#ifndef SPARTA_WORKER_DATA_SPLIT_READER_H_
#define SPARTA_WORKER_DATA_SPLIT_READER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "common/input_split.h"
#include "sparta/sdk/reader.h"

namespace sparta {

class SplitReader {
 public:
  SplitReader(std::vector<FileRange> ranges, std::unique_ptr<Reader> reader, int64_t max_bad_lines);

  // Reads every range once. `sink(example, bytes_done)` gets each good line
  // (bytes_done: bytes of this pass consumed so far) and returns false to
  // stop early. Bad lines are counted only on the first pass.
  absl::Status ReadPass(const std::function<bool(const Example&, uint64_t)>& sink);
  // data.assignment on_demand: reads one work unit's range instead (the
  // reader is built with no ranges). `bytes_done` counts from the range's
  // start. Bad lines are counted only when `count_bad` (the first epoch).
  absl::Status ReadUnit(const FileRange& range, bool count_bad,
                        const std::function<bool(const Example&, uint64_t)>& sink);

  uint64_t bad_lines() const { return bad_lines_; }
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  absl::Status ReadRange(const FileRange& range, uint64_t bytes_before,
                         const std::function<bool(const Example&, uint64_t)>& sink, bool* stopped);
  // Parses `line` into example_; false (with parse_error_ set) if it is bad.
  bool ParseRecord(std::string_view line);
  absl::Status OnBadLine(const FileRange& range, uint64_t line_in_range, const std::string& why);

  const std::vector<FileRange> ranges_;
  const std::unique_ptr<Reader> reader_;
  const int64_t max_bad_lines_;
  uint64_t total_bytes_ = 0;
  uint64_t bad_lines_ = 0;
  int passes_ = 0;
  bool count_bad_ = true;  // this pass or unit counts its bad lines
  Example example_;
  std::string parse_error_;
};

// Counts '\n' bytes in [0, end) of `path`.
absl::StatusOr<uint64_t> CountNewlines(const std::string& path, uint64_t end);

}  // namespace sparta

#endif  // SPARTA_WORKER_DATA_SPLIT_READER_H_
