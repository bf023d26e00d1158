#include "scheduler/cluster_metrics.h"

#include "absl/strings/str_cat.h"
#include "common/daemon_options.h"

namespace sparta {

MetricWriter ClusterMetrics(const pb::ClusterStatus& status, bool serving_cluster) {
  MetricWriter out;
  out.Gauge("sparta_cluster_epoch", "Cluster view epoch this node acts on.", static_cast<double>(status.epoch()));
  out.Gauge("sparta_job_running", "1 while the job trains.", status.phase() == "running" ? 1 : 0);
  out.Counter("sparta_dropped_messages_total", "Malformed or unexpected messages dropped.",
              static_cast<double>(status.dropped_messages()));
  out.Gauge("sparta_checkpoint_version", "Newest published checkpoint (0: none).",
            static_cast<double>(status.checkpoint_version()));
  out.Gauge("sparta_model_version", "Newest model version published for serving (serving.publish_every; 0: none).",
            static_cast<double>(status.model_version()));
  if (serving_cluster) {
    out.Gauge("sparta_serving_version", "Model version a serving cluster's front-ends read at (every server holds it).",
              static_cast<double>(status.serving_version()));
  }
  out.Gauge("sparta_worker_step_spread", "Steps between the fastest and the slowest worker (staleness).",
            static_cast<double>(status.clock_max() - status.clock_min()));
  for (const pb::NodeStatus& n : status.nodes()) {
    const MetricLabels node = {{"node", absl::StrCat(RoleName(n.info().role()), "-", n.info().rank())}};
    out.Gauge("sparta_node_up", "1 for a live node, 0 for one declared dead.", n.dead() ? 0 : 1, node);
    out.Gauge("sparta_heartbeat_age_seconds", "Seconds since the scheduler last heard from the node.",
              n.heartbeat_age_seconds(), node);
    if (n.info().role() == pb::SERVER && !n.dead()) {
      out.Gauge("sparta_server_rows", "Rows each server holds, from its heartbeats.",
                static_cast<double>(n.server().rows()), node);
      out.Gauge("sparta_replication_lag_updates",
                "Most update batches any replica shard on the server is behind its primary.",
                static_cast<double>(n.replication_lag()), node);
    }
    if (n.info().role() == pb::WORKER) {
      out.Gauge("sparta_worker_examples_per_second", "Each worker's recent throughput, from its heartbeats.",
                n.worker().examples_per_sec(), node);
      out.Gauge("sparta_worker_steps", "Training steps each worker has finished.",
                static_cast<double>(n.worker().steps()), node);
    }
  }
  return out;
}

}  // namespace sparta
