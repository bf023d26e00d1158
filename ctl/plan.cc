#include "ctl/plan.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/hash.h"
#include "common/status_macros.h"
#include "server/memory_budget.h"
#include "server/optimizer.h"
#include "server/row_store.h"
#include "server/table_policy.h"
#include "server/table_shard.h"

namespace sparta {
namespace {

// Rows measured per table: enough that per-shard slack averages out.
constexpr uint64_t kSampleRows = 200000;

std::string Bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024 && u < 5) b /= 1024, ++u;
  return absl::StrFormat(u == 0 ? "%.1f %s" : "%.2f %s", b, units[u]);
}

// DRAM and disk per row of `spec`, measured on the server's own structures
// holding kSampleRows rows spread over the cluster's shards.
absl::Status Measure(const Config& config, const pb::TableSpec& spec, const std::string& dir, TableCost* cost) {
  SPARTA_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer, Optimizer::Create(spec.optimizer()));
  const TablePolicy policy = ResolveTablePolicy(spec, config);
  const bool tiered = config.server.memory_limit_bytes != 0;
  const int shard_bits = std::countr_zero(static_cast<uint32_t>(config.cluster.num_shards));
  std::vector<std::unique_ptr<TableShard>> shards;
  for (int s = 0; s < config.cluster.num_shards; ++s) {
    shards.push_back(std::make_unique<TableShard>(s, &spec, optimizer.get(), policy.eviction, tiered, policy.expires()));
  }
  for (uint64_t k = 0; k < kSampleRows; ++k) {
    const uint64_t key = Mix64(k + 1);
    TableShard& shard = *shards[ShardOf(key, shard_bits)];
    shard.MarkChanged(shard.Insert(key, nullptr, false));
  }
  double dram = 0;
  for (const auto& s : shards) dram += static_cast<double>(s->bytes());
  cost->dram_per_row = dram / kSampleRows;

  SPARTA_ASSIGN_OR_RETURN(auto store, RowStore::Open(dir, /*wal=*/false, /*fresh=*/true, 64 << 20));
  SPARTA_RETURN_IF_ERROR(store->AddTable(spec.id()));
  RowBatch batch;
  for (auto& s : shards) {
    s->Persist(store->column(spec.id()), &batch);
    if (batch.count() >= 65536) SPARTA_RETURN_IF_ERROR(store->Write(&batch));
  }
  SPARTA_RETURN_IF_ERROR(store->Write(&batch));
  SPARTA_RETURN_IF_ERROR(store->Checkpoint(dir + "-flushed"));  // flushes the memtables into table files
  cost->disk_per_row = static_cast<double>(store->GetSizes().sst_bytes) / kSampleRows;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MemoryPlan> PlanMemory(const Config& config, const std::vector<pb::TableSpec>& specs, uint64_t keys,
                                      const std::string& scratch_dir) {
  MemoryPlan plan;
  plan.keys = keys;
  plan.servers = config.cluster.servers;
  plan.replication_factor = config.storage.replication_factor;
  const std::string dir = absl::StrCat(scratch_dir, "/sparta-plan-", getpid());
  absl::Status failed;
  for (const pb::TableSpec& spec : specs) {
    TableCost cost;
    cost.name = spec.name();
    cost.dense = spec.kind() == pb::TableSpec::DENSE;
    cost.rows = cost.dense ? (spec.dense_size() + spec.dim() - 1) / spec.dim() : keys;
    failed = Measure(config, spec, absl::StrCat(dir, "/", spec.id()), &cost);
    if (!failed.ok()) break;
    plan.tables.push_back(cost);
    const double copies = static_cast<double>(cost.rows) * plan.replication_factor / plan.servers;
    plan.dram_per_server += copies * cost.dram_per_row;
    plan.disk_per_server += copies * cost.disk_per_row;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  SPARTA_RETURN_IF_ERROR(failed);
  plan.memory_limit = config.server.memory_limit_bytes;
  if (plan.memory_limit != 0) {
    Config with_store = config;
    if (with_store.storage.path.empty()) with_store.storage.path = ".";  // as scripts/sparta launch sets it
    SPARTA_ASSIGN_OR_RETURN(plan.hot_budget, HotRowBudget(with_store));
    const double total = plan.dram_per_server * plan.servers;
    plan.servers_for_all_hot = static_cast<int>(std::ceil(total / static_cast<double>(plan.hot_budget)));
  }
  return plan;
}

std::string PlanText(const MemoryPlan& p) {
  std::string out = absl::StrFormat("%u distinct keys on %d servers, replication_factor %d\n", p.keys, p.servers,
                                    p.replication_factor);
  absl::StrAppendFormat(&out, "%-16s %-6s %14s %10s %10s %13s %13s\n", "TABLE", "KIND", "ROWS", "DRAM/ROW", "DISK/ROW",
                        "DRAM/SERVER", "DISK/SERVER");
  for (const TableCost& t : p.tables) {
    const double copies = static_cast<double>(t.rows) * p.replication_factor / p.servers;
    absl::StrAppendFormat(&out, "%-16s %-6s %14u %10s %10s %13s %13s\n", t.name, t.dense ? "dense" : "sparse", t.rows,
                          Bytes(t.dram_per_row), Bytes(t.disk_per_row), Bytes(copies * t.dram_per_row),
                          Bytes(copies * t.disk_per_row));
  }
  absl::StrAppendFormat(&out, "every row hot: %s of DRAM per server (plus the fixed overhead in the README)\n",
                        Bytes(p.dram_per_server));
  absl::StrAppendFormat(&out, "every row cold: %s of disk per server\n", Bytes(p.disk_per_server));
  if (p.memory_limit == 0) {
    out += "server.memory_limit is unset: every row stays in DRAM; set it to plan a cold tier\n";
  } else {
    const double hot_fraction = std::min(1.0, static_cast<double>(p.hot_budget) / p.dram_per_server);
    absl::StrAppendFormat(&out,
                          "server.memory_limit %s: %s for hot rows per server, so %.1f%% of the rows stay hot; "
                          "%d servers would hold every row hot\n",
                          Bytes(static_cast<double>(p.memory_limit)), Bytes(static_cast<double>(p.hot_budget)),
                          100 * hot_fraction, std::max(1, p.servers_for_all_hot));
  }
  return out;
}

}  // namespace sparta
