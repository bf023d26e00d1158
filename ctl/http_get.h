// HttpGet: fetches one URL path over plain HTTP/1.1 (sparta-ctl metrics
// reads the daemons' /metrics with it). Stateless; thread-safe.
#ifndef SPARTA_CTL_HTTP_GET_H_
#define SPARTA_CTL_HTTP_GET_H_

#include <chrono>
#include <string>

#include "absl/status/statusor.h"

namespace sparta {

// The body of a 200 answer; an error for anything else or after `timeout`.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path,
                                    std::chrono::milliseconds timeout);

}  // namespace sparta

#endif  // SPARTA_CTL_HTTP_GET_H_
