// WriteScaleRequest: tells the launcher of a job (scripts/sparta launch)
// how many servers the job should run on, through its run folder:
// RUN/scale.json, {"servers": N}. The launcher watches that file and starts
// the servers that are wanted and not running (sparta-server --join); the
// scheduler, told first (sparta-ctl scale), moves shards to each.
// Stateless; thread-safe.
#ifndef SPARTA_CTL_SCALE_REQUEST_H_
#define SPARTA_CTL_SCALE_REQUEST_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace sparta {

// Written whole or not at all (a temporary file renamed over it).
absl::Status WriteScaleRequest(const std::string& run_dir, uint32_t servers);

}  // namespace sparta

#endif  // SPARTA_CTL_SCALE_REQUEST_H_
