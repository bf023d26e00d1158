// ClusterMetrics: what the scheduler's /metrics says, read off a status
// built by hand: every node's up gauge by its role and rank, a server's
// rows and lag only while it lives, a worker's throughput, the step spread,
// and the serving version only on a serving cluster's scheduler.
#include "scheduler/cluster_metrics.h"

#include <string>

#include <catch2/catch.hpp>

namespace sparta::cluster_metrics_test {
namespace {

pb::NodeStatus* AddNode(pb::ClusterStatus* status, pb::Role role, int rank, bool dead) {
  pb::NodeStatus* n = status->add_nodes();
  n->mutable_info()->set_role(role);
  n->mutable_info()->set_rank(rank);
  n->set_dead(dead);
  n->set_heartbeat_age_seconds(0.25);
  return n;
}

pb::ClusterStatus TwoServersOneWorker() {
  pb::ClusterStatus status;
  status.set_phase("running");
  status.set_epoch(7);
  status.set_clock_min(10);
  status.set_clock_max(13);
  status.set_serving_version(5);
  pb::NodeStatus* live = AddNode(&status, pb::SERVER, 0, false);
  live->mutable_server()->set_rows(1234);
  live->set_replication_lag(3);
  AddNode(&status, pb::SERVER, 1, true)->mutable_server()->set_rows(99);
  pb::NodeStatus* worker = AddNode(&status, pb::WORKER, 0, false);
  worker->mutable_worker()->set_examples_per_sec(500.5);
  worker->mutable_worker()->set_steps(42);
  return status;
}

TEST_CASE("nodes by role and rank, and no rows reported for a dead server") {
  const std::string text = ClusterMetrics(TwoServersOneWorker(), /*serving_cluster=*/false).Render();
  CHECK_THAT(text, Catch::Contains("sparta_cluster_epoch 7"));
  CHECK_THAT(text, Catch::Contains("sparta_job_running 1"));
  CHECK_THAT(text, Catch::Contains("sparta_worker_step_spread 3"));
  CHECK_THAT(text, Catch::Contains("sparta_node_up{node=\"server-0\"} 1"));
  CHECK_THAT(text, Catch::Contains("sparta_node_up{node=\"server-1\"} 0"));
  CHECK_THAT(text, Catch::Contains("sparta_node_up{node=\"worker-0\"} 1"));
  CHECK_THAT(text, Catch::Contains("sparta_server_rows{node=\"server-0\"} 1234"));
  CHECK_THAT(text, !Catch::Contains("sparta_server_rows{node=\"server-1\"}"));
  CHECK_THAT(text, Catch::Contains("sparta_replication_lag_updates{node=\"server-0\"} 3"));
  CHECK_THAT(text, Catch::Contains("sparta_worker_examples_per_second{node=\"worker-0\"} 500.5"));
  CHECK_THAT(text, Catch::Contains("sparta_worker_steps{node=\"worker-0\"} 42"));
  CHECK_THAT(text, !Catch::Contains("sparta_serving_version"));
}

TEST_CASE("a serving cluster's scheduler also says the version its front-ends read at") {
  const std::string text = ClusterMetrics(TwoServersOneWorker(), /*serving_cluster=*/true).Render();
  CHECK_THAT(text, Catch::Contains("sparta_serving_version 5"));
}

}  // namespace
}  // namespace sparta::cluster_metrics_test
