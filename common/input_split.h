// Input splitting: which bytes of which files a worker reads.
//
// With at least as many files as workers, worker r reads whole files
// r, r+W, r+2W, ... Otherwise each file is cut into byte ranges, one per
// worker that shares it; a range owns every line that *starts* inside it, so
// the ranges of all workers together read every line exactly once. Pure
// functions; thread-safe.
#ifndef SPARTA_COMMON_INPUT_SPLIT_H_
#define SPARTA_COMMON_INPUT_SPLIT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sparta {

struct FileRange {
  std::string path;
  uint64_t begin = 0;  // first byte (a line starting at or after it belongs here)
  uint64_t end = 0;    // lines starting at or after `end` belong to the next range
};

// Expands paths and globs, in the given order (each glob's matches sorted).
// An entry that matches nothing is a NotFound error naming it and `key`.
absl::StatusOr<std::vector<std::string>> ExpandInputs(const std::vector<std::string>& patterns,
                                                      const std::string& key);

// data.follow: the files `patterns` name now. A folder names its regular
// files; a glob, its matches. Names starting with '.' are left out (a file
// being written goes under such a name and is renamed into place when
// whole), and nothing matching is no error. Sorted by path within each
// pattern, without duplicates. An unreadable folder is an error naming `key`.
absl::StatusOr<std::vector<std::string>> ListArrivedInputs(const std::vector<std::string>& patterns,
                                                           const std::string& key);

// The ranges worker `rank` of `workers` reads.
absl::StatusOr<std::vector<FileRange>> SplitInput(const std::vector<std::string>& files, int rank, int workers);

}  // namespace sparta

#endif  // SPARTA_COMMON_INPUT_SPLIT_H_
