// Scheduler: the cluster coordinator's event loop. It owns the ROUTER socket
// that every node and sparta-ctl connect to, the watch on closed
// connections, CurveZMQ authentication and the /metrics endpoint; it
// receives each message, hands it to the JobCoordinator (what the messages
// mean: scheduler/job_coordinator.h), and sends what that answers.
//
// One thread runs everything (Run()). The class is not thread-safe and
// needs no locks.
#ifndef SPARTA_SCHEDULER_SCHEDULER_H_
#define SPARTA_SCHEDULER_SCHEDULER_H_

#include <memory>
#include <string>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "common/cluster_auth.h"
#include "common/config.h"
#include "common/daemon_metrics.h"
#include "scheduler/connection_watch.h"
#include "scheduler/etcd_client.h"
#include "scheduler/job_coordinator.h"
#include "scheduler/leadership.h"

namespace sparta {

class Scheduler {
 public:
  // `summary_file`: where the job summary JSON is written at the end ("" for none).
  // `info_file`: where to describe this node once bound ("" for none).
  // `rank`: which of cluster.scheduler's addresses is this scheduler's
  // (-1: the first).
  Scheduler(const Config& config, std::string summary_file, std::string info_file, int rank = -1);

  // Runs the job to its end. OK when every worker finished and every server
  // flushed; otherwise the reason the job failed (also broadcast as ABORT).
  // With cluster.coordination etcd, a standby first waits to lead; it
  // returns OK without serving if the job ends under another leader.
  absl::Status Run();

 private:
  // cluster.coordination etcd: stands by until this scheduler leads (true)
  // or the job is over (false).
  absl::StatusOr<bool> Lead();
  // Run() without the summary: the job from start to end.
  absl::Status Serve();
  // Sends what the coordinator answered.
  void SendOutbox();
  // After the job's last word (SHUTDOWN or ABORT): keeps the connections
  // open until every live node has closed its own, for at most a few
  // seconds (see scheduler.cc).
  void AwaitNodesGone();
  void PublishMetrics();
  void WriteSummary() const;

  const Config config_;
  const std::string summary_file_;
  const std::string info_file_;
  const int rank_;              // --rank: its place in cluster.scheduler (-1: not given)
  const std::string address_;  // host:port this scheduler listens on
  std::unique_ptr<EtcdClient> etcd_;       // cluster.coordination etcd
  std::unique_ptr<Leadership> leadership_;  // cluster.coordination etcd
  // Another scheduler leads now: this one stops without a word to the
  // nodes (they are the new leader's) and writes no summary.
  bool deposed_ = false;
  JobCoordinator job_;
  zmq::context_t context_;
  std::unique_ptr<ZapAuthenticator> zap_;  // cluster.auth: curve
  zmq::socket_t socket_;
  ConnectionWatch watch_;  // nodes whose connection closed (a process gone)
  DaemonMetrics metrics_;  // last: its scrapes read snapshots only
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_SCHEDULER_H_
