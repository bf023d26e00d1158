// What a server reports of a table's tiers: each executor's counters summed
// (hot bytes at the executor's cost per row, plus its side bytes; a count
// caught below zero reads as zero), and the /metrics samples of the sum.
#include "server/tier_report.h"

#include <catch2/catch.hpp>

namespace sparta::tier_report_test {
namespace {

TEST_CASE("a table's tier figures are its executors' summed, and read the same on /metrics", "[tier_report]") {
  TableTierStats a, b;
  a.hot_rows = 10;
  a.cold_rows = 90;
  a.side_bytes = 7;
  a.demoted = 100;
  a.promoted = 12;
  a.cold_reads = 40;
  a.cold_read_batches = 4;
  a.cold_read_ns = 2'500'000'000;
  a.cold_reads_ahead = 30;
  b.hot_rows = 5;
  b.cold_rows = -1;  // a row demoted on one thread, counted on another: not yet
  b.admitted = 3;
  b.deferred = 8;
  b.expired = 2;
  b.cold_read_ns = 500'000'000;
  pb::TableTier t;
  t.set_table("fm.wv");
  AddExecutorTier(a, /*row_cost=*/100, &t);
  AddExecutorTier(b, /*row_cost=*/200, &t);
  CHECK(t.hot_rows() == 15);
  CHECK(t.cold_rows() == 90);
  CHECK(t.hot_bytes() == 10 * 100 + 7 + 5 * 200);
  CHECK(t.demoted() == 100);
  CHECK(t.promoted() == 12);
  CHECK(t.admitted() == 3);
  CHECK(t.deferred() == 8);
  CHECK(t.expired() == 2);
  CHECK(t.cold_reads() == 40);
  CHECK(t.cold_read_batches() == 4);
  CHECK(t.cold_read_seconds() == Approx(3.0));
  CHECK(t.cold_reads_ahead() == 30);

  MetricWriter out;
  WriteTableTierMetrics(t, out);
  const std::string text = out.Render();
  CHECK_THAT(text, Catch::Contains("sparta_table_hot_rows{table=\"fm.wv\"} 15\n"));
  CHECK_THAT(text, Catch::Contains("sparta_table_cold_rows{table=\"fm.wv\"} 90\n"));
  CHECK_THAT(text, Catch::Contains("sparta_table_hot_bytes{table=\"fm.wv\"} 2007\n"));
  CHECK_THAT(text, Catch::Contains("sparta_table_rows_demoted_total{table=\"fm.wv\"} 100\n"));
  CHECK_THAT(text, Catch::Contains("sparta_table_cold_read_seconds_total{table=\"fm.wv\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("# TYPE sparta_table_rows_promoted_total counter\n"));
  CHECK_THAT(text, Catch::Contains("# TYPE sparta_table_cold_rows gauge\n"));
}

}  // namespace
}  // namespace sparta::tier_report_test
