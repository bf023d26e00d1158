#include "ctl/status_text.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/daemon_options.h"

namespace sparta {

namespace {

std::string Mebibytes(uint64_t bytes) { return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20)); }

// A server's memory against its limit, and each table's tiers, indented
// under the server's line.
std::string TierText(const pb::ServerStats& s) {
  std::string out;
  if (s.memory_limit() != 0) {
    absl::StrAppendFormat(&out, "%12s memory %s resident of a %s limit, %s on disk\n", "", Mebibytes(s.resident_bytes()),
                          Mebibytes(s.memory_limit()), Mebibytes(s.disk_bytes()));
  }
  for (const pb::TableTier& t : s.tables()) {
    if (t.hot_rows() + t.cold_rows() + t.deferred() == 0) continue;
    absl::StrAppendFormat(&out, "%12s table %s: %u hot rows (%s) + %u cold; %u demoted, %u promoted", "", t.table(),
                          t.hot_rows(), Mebibytes(t.hot_bytes()), t.cold_rows(), t.demoted(), t.promoted());
    if (t.cold_read_batches() != 0) {
      absl::StrAppendFormat(&out, "; %u cold reads (%u while their request waited), %.3f ms per batch", t.cold_reads(),
                            t.cold_reads_ahead(), 1e3 * t.cold_read_seconds() / static_cast<double>(t.cold_read_batches()));
    }
    if (t.admitted() + t.deferred() != 0) {
      absl::StrAppendFormat(&out, "; %u admitted, %u occurrences waiting", t.admitted(), t.deferred());
    }
    if (t.expired() != 0) absl::StrAppendFormat(&out, "; %u expired", t.expired());
    out += "\n";
  }
  return out;
}

}  // namespace

std::string StatusText(const pb::ClusterStatus& s, const std::string& scheduler_address) {
  std::string out =
      s.serving_version() != 0
          ? absl::StrFormat("serving cluster %s | epoch %u | up %.1f s | %u shards | model version v%u | %u messages "
                            "dropped\n",
                            s.phase(), s.epoch(), s.uptime_seconds(), s.num_shards(), s.serving_version(),
                            s.dropped_messages())
          : absl::StrFormat(
                "job %s | epoch %u | up %.1f s | %u shards | consistency %s | worker steps %u..%u (staleness %u) | "
                "checkpoint %s%s | %u messages dropped\n",
                s.phase(), s.epoch(), s.uptime_seconds(), s.num_shards(), s.consistency(), s.clock_min(),
                s.clock_max(), s.clock_max() - s.clock_min(),
                s.checkpoint_version() ? absl::StrCat("v", s.checkpoint_version()) : "none",
                s.checkpoint_running() ? " (one running)" : "", s.dropped_messages());
  if (s.model_version() != 0) absl::StrAppendFormat(&out, "published model version v%u\n", s.model_version());
  int servers_up = 0;
  for (const pb::NodeStatus& n : s.nodes()) servers_up += n.info().role() == pb::SERVER && !n.dead();
  if (s.shards_moving() != 0 || (s.servers_wanted() != 0 && static_cast<int>(s.servers_wanted()) != servers_up)) {
    absl::StrAppendFormat(&out, "servers: %d up, %u wanted | %u shard copies moving (%u handing off)\n", servers_up,
                          s.servers_wanted(), s.shards_moving(), s.shards_handing_off());
  }
  absl::StrAppendFormat(&out, "%-11s %-22s %-7s %-5s %-9s %s\n", "NODE", "ADDRESS", "METRICS", "STATE", "HEARTBEAT",
                        "DETAIL");
  absl::StrAppendFormat(&out, "%-11s %-22s %-7s %-5s %-9s %s\n", "scheduler", scheduler_address,
                        s.scheduler_metrics_port() ? std::to_string(s.scheduler_metrics_port()) : "-", "up", "-", "");
  for (const pb::NodeStatus& n : s.nodes()) {
    const pb::NodeInfo& info = n.info();
    const std::string name = absl::StrCat(RoleName(info.role()), "-", info.rank());
    const std::string address =
        info.data_port() ? absl::StrCat(info.host(), ":", info.data_port()) : absl::StrCat(info.host(), " (pid ", info.pid(), ")");
    std::string detail;
    if (info.role() == pb::SERVER) {
      detail = n.dead() ? "failed over to its replicas"
                        : absl::StrFormat("%u primary + %u replica shards (%u rows), lag %u, %u rows stored, %u pulls, "
                                          "%u pushes",
                                          n.primaries(), n.replicas(), n.rows_held(), n.replication_lag(),
                                          n.server().rows(),
                                          n.server().pull_requests(), n.server().push_requests());
    } else if (info.role() == pb::SERVING) {
      detail = n.dead() ? "gone" : "front-end (sparta-serve)";
    } else {
      const pb::WorkerProgress& w = n.worker();
      detail = absl::StrFormat("epoch %u, %u steps, %u examples, %.0f ex/s, loss %.5f, AUC %.4f, %.1f%%, ETA %.0f s",
                               w.epoch(), w.steps(), w.examples(), w.examples_per_sec(), w.loss(), w.auc(),
                               100 * w.done_fraction(), w.eta_seconds());
    }
    absl::StrAppendFormat(&out, "%-11s %-22s %-7s %-5s %-9s %s\n", name, address,
                          info.metrics_port() ? std::to_string(info.metrics_port()) : "-", n.dead() ? "dead" : "up",
                          absl::StrFormat("%.1f s", n.heartbeat_age_seconds()), detail);
    if (info.role() == pb::SERVER && !n.dead()) out += TierText(n.server());
  }
  return out;
}

}  // namespace sparta
