// Plan: what a job's tables will cost before it starts (`sparta-ctl plan
// CONFIG --keys N`). For each table of the configured model: bytes per row
// in DRAM (weights, optimizer state, hash index, per-row bookkeeping) and
// on disk in the cold tier, both measured here on the server's own
// TableShard and a real RocksDB, not estimated; then DRAM and disk per
// server for N distinct keys at the configured server count and
// replication factor, and how many servers server.memory_limit needs to
// hold every row hot. Stateless; thread-safe.
#ifndef SPARTA_CTL_PLAN_H_
#define SPARTA_CTL_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta.pb.h"

namespace sparta {

struct TableCost {
  std::string name;
  bool dense = false;
  uint64_t rows = 0;           // for the planned keys (dense: its blocks)
  double dram_per_row = 0;     // bytes, measured
  double disk_per_row = 0;     // bytes in RocksDB's table files, measured
};

struct MemoryPlan {
  uint64_t keys = 0;
  int servers = 0;
  int replication_factor = 1;
  std::vector<TableCost> tables;
  double dram_per_server = 0;   // every row hot
  double disk_per_server = 0;   // every row in the cold tier
  uint64_t memory_limit = 0;    // server.memory_limit; 0: unset
  uint64_t hot_budget = 0;      // of it, for hot rows
  int servers_for_all_hot = 0;  // at that limit
};

// Measures `specs` (the model's tables) and plans for `keys` distinct keys.
// `scratch_dir` is used for a temporary RocksDB and removed.
absl::StatusOr<MemoryPlan> PlanMemory(const Config& config, const std::vector<pb::TableSpec>& specs, uint64_t keys,
                                      const std::string& scratch_dir);

std::string PlanText(const MemoryPlan& plan);

}  // namespace sparta

#endif  // SPARTA_CTL_PLAN_H_
