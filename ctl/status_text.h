// StatusText: `sparta-ctl status` as a human reads it: one line for the
// job, then one row per node (role, address, state, heartbeat age, shards,
// throughput, loss, staleness). Stateless; thread-safe.
#ifndef SPARTA_CTL_STATUS_TEXT_H_
#define SPARTA_CTL_STATUS_TEXT_H_

#include <string>

#include "sparta.pb.h"

namespace sparta {

std::string StatusText(const pb::ClusterStatus& status, const std::string& scheduler_address);

}  // namespace sparta

#endif  // SPARTA_CTL_STATUS_TEXT_H_
