// What a server reports of its tables' tiers (hot and cold rows, bytes, rows
// moved, admitted, expired, cold reads): each executor's counters
// (TableTierStats), their sum for a table (AddExecutorTier, into the
// pb::TableTier that heartbeats carry to `sparta-ctl status`), and how a
// table's sum reads on /metrics (WriteTableTierMetrics). No sockets and no
// executor: the server gathers, these say what the figures mean.
//
// TableTierStats is written by its executor's thread only and read by any;
// the functions are thread-compatible.
#ifndef SPARTA_SERVER_TIER_REPORT_H_
#define SPARTA_SERVER_TIER_REPORT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/metrics.h"
#include "sparta.pb.h"

namespace sparta {

// The life of one table's rows on one executor.
struct TableTierStats {
  std::atomic<int64_t> hot_rows{0};
  std::atomic<int64_t> cold_rows{0};
  std::atomic<int64_t> side_bytes{0};  // the shards' TableShard::side_bytes()
  std::atomic<uint64_t> demoted{0};    // rows moved to the cold tier
  std::atomic<uint64_t> promoted{0};   // rows brought back
  std::atomic<uint64_t> admitted{0};   // new keys given a row
  std::atomic<uint64_t> deferred{0};   // occurrences of keys not admitted (yet)
  std::atomic<uint64_t> expired{0};
  std::atomic<uint64_t> cold_reads{0};  // keys looked up in the store
  std::atomic<uint64_t> cold_read_batches{0};
  std::atomic<uint64_t> cold_read_ns{0};  // time in those lookups
  // Of cold_reads, keys read for a request while it waited behind others.
  std::atomic<uint64_t> cold_reads_ahead{0};
};

// Adds one executor's figures for a table to `table`. `row_cost`: DRAM one
// hot row of the table costs on that executor (weights, optimizer state,
// index); its hot bytes are its hot rows at that cost plus its side bytes
// (the filter of cold keys, admission counters). Counts that an executor
// has driven below zero for a moment (a row demoted on one thread, counted
// on another) read as zero.
void AddExecutorTier(const TableTierStats& stats, size_t row_cost, pb::TableTier* table);

// The table's figures as /metrics samples, labelled with its name.
void WriteTableTierMetrics(const pb::TableTier& table, MetricWriter& out);

}  // namespace sparta

#endif  // SPARTA_SERVER_TIER_REPORT_H_
