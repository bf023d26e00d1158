// How a server divides server.memory_limit: RocksDB's block cache and
// memtables (the cold tier's own memory), the admission counters, buffers
// for replication, and what is left for hot rows. Shared by the server and
// `sparta-ctl plan`, so that a plan is what the server will do. Pure
// functions; thread-safe.
#ifndef SPARTA_SERVER_MEMORY_BUDGET_H_
#define SPARTA_SERVER_MEMORY_BUDGET_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace sparta {

// RocksDB's share (block cache and memtables); 0 without a limit.
uint64_t ColdTierBytes(const Config& config);

// What is left of server.memory_limit for hot rows, all executors
// together; 0 without a limit. An error (naming the key) when the limit
// leaves no room for rows, or there is no storage.path for the cold tier.
absl::StatusOr<uint64_t> HotRowBudget(const Config& config);

}  // namespace sparta

#endif  // SPARTA_SERVER_MEMORY_BUDGET_H_
