#include "server/memory_budget.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sparta {

uint64_t ColdTierBytes(const Config& config) {
  const uint64_t limit = config.server.memory_limit_bytes;
  return limit == 0 ? 0 : std::max<uint64_t>(8 << 20, limit / 8);
}

absl::StatusOr<uint64_t> HotRowBudget(const Config& config) {
  const uint64_t limit = config.server.memory_limit_bytes;
  if (limit == 0) return 0;
  if (config.storage.path.empty() && config.storage.db_path.empty()) {
    // (scripts/sparta launch always sets it, to the run folder.)
    return absl::InvalidArgumentError(absl::StrCat(config.Where("server.memory_limit"),
                                                   ": key 'server.memory_limit' needs storage.path: rows past the "
                                                   "limit move to the server's RocksDB"));
  }
  uint64_t counters = 0;
  auto add_counters = [&](const TablePolicyConfig& p) {
    if (p.admission_min_count > 1 || p.admission_probability < 1) counters += p.admission_counter_bytes_value;
  };
  add_counters(config.embedding.defaults);
  for (const auto& [name, p] : config.embedding.tables) add_counters(p);
  const uint64_t replication = limit / 16;  // snapshot chunks and forwarded pushes in flight
  const uint64_t reserved = ColdTierBytes(config) + counters + replication;
  if (reserved + (4 << 20) > limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        config.Where("server.memory_limit"), ": key 'server.memory_limit': ", config.server.memory_limit,
        " leaves no room for rows: RocksDB's cache and memtables take ", ColdTierBytes(config) >> 20,
        " MiB, the admission counters ", counters >> 20, " MiB and replication buffers ", replication >> 20,
        " MiB; give at least ", (reserved + (16 << 20)) >> 20, "MiB"));
  }
  return limit - reserved;
}

}  // namespace sparta
