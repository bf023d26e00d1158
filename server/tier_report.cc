#include "server/tier_report.h"

#include <algorithm>

namespace sparta {

namespace {

uint64_t NotBelowZero(const std::atomic<int64_t>& value) {
  return static_cast<uint64_t>(std::max<int64_t>(0, value.load(std::memory_order_relaxed)));
}

}  // namespace

void AddExecutorTier(const TableTierStats& st, size_t row_cost, pb::TableTier* t) {
  const uint64_t hot_rows = NotBelowZero(st.hot_rows);
  t->set_hot_rows(t->hot_rows() + hot_rows);
  t->set_cold_rows(t->cold_rows() + NotBelowZero(st.cold_rows));
  t->set_hot_bytes(t->hot_bytes() + hot_rows * row_cost + NotBelowZero(st.side_bytes));
  t->set_demoted(t->demoted() + st.demoted.load());
  t->set_promoted(t->promoted() + st.promoted.load());
  t->set_admitted(t->admitted() + st.admitted.load());
  t->set_deferred(t->deferred() + st.deferred.load());
  t->set_expired(t->expired() + st.expired.load());
  t->set_cold_reads(t->cold_reads() + st.cold_reads.load());
  t->set_cold_read_batches(t->cold_read_batches() + st.cold_read_batches.load());
  t->set_cold_read_seconds(t->cold_read_seconds() + static_cast<double>(st.cold_read_ns.load()) * 1e-9);
  t->set_cold_reads_ahead(t->cold_reads_ahead() + st.cold_reads_ahead.load());
}

void WriteTableTierMetrics(const pb::TableTier& t, MetricWriter& out) {
  const MetricLabels labels{{"table", t.table()}};
  out.Gauge("sparta_table_hot_rows", "Rows of the table in DRAM.", static_cast<double>(t.hot_rows()), labels);
  out.Gauge("sparta_table_cold_rows", "Rows of the table in RocksDB only (the cold tier).",
            static_cast<double>(t.cold_rows()), labels);
  out.Gauge("sparta_table_hot_bytes",
            "DRAM the table's hot rows cost (weights, optimizer state, index) and its filter of cold keys.",
            static_cast<double>(t.hot_bytes()), labels);
  out.Counter("sparta_table_rows_demoted_total", "Rows moved from DRAM to the cold tier.",
              static_cast<double>(t.demoted()), labels);
  out.Counter("sparta_table_rows_promoted_total", "Rows brought back from the cold tier.",
              static_cast<double>(t.promoted()), labels);
  out.Counter("sparta_table_rows_admitted_total", "New keys given a row by admission.",
              static_cast<double>(t.admitted()), labels);
  out.Counter("sparta_table_admission_deferred_total", "Occurrences of keys not admitted (yet).",
              static_cast<double>(t.deferred()), labels);
  out.Counter("sparta_table_rows_expired_total", "Rows deleted for not being updated within the TTL.",
              static_cast<double>(t.expired()), labels);
  out.Counter("sparta_table_cold_reads_total", "Keys looked up in the cold tier.",
              static_cast<double>(t.cold_reads()), labels);
  out.Counter("sparta_table_cold_read_batches_total", "Batched cold-tier lookups (RocksDB MultiGet).",
              static_cast<double>(t.cold_read_batches()), labels);
  out.Counter("sparta_table_cold_read_seconds_total", "Time spent in cold-tier lookups.", t.cold_read_seconds(),
              labels);
  out.Counter("sparta_table_cold_reads_ahead_total",
              "Of the keys looked up in the cold tier, those read while their request waited behind others.",
              static_cast<double>(t.cold_reads_ahead()), labels);
}

}  // namespace sparta
