// WriteScaleRequest: tells the launcher of a job (scripts/sparta launch) to
// start servers, through its run folder: RUN/scale.json, {"servers": N,
// "start": K, "request": ID}. The launcher watches that file and, for each
// new ID, starts K servers (sparta-server --join); the scheduler, told
// first (sparta-ctl scale), counted K (it knows which servers are draining
// and will not stay) and moves shards to each.
// Stateless; thread-safe.
#ifndef SPARTA_CTL_SCALE_REQUEST_H_
#define SPARTA_CTL_SCALE_REQUEST_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace sparta {

// Written whole or not at all (a temporary file renamed over it).
absl::Status WriteScaleRequest(const std::string& run_dir, uint32_t servers, uint32_t start);

}  // namespace sparta

#endif  // SPARTA_CTL_SCALE_REQUEST_H_
