// ClusterMetrics: the scheduler's /metrics figures, read off the job's
// status (JobCoordinator::BuildStatus): the view's epoch, whether the job
// trains, checkpoint and model versions, the workers' step spread, and per
// node whether it is up, its heartbeat's age, a server's rows and
// replication lag, a worker's throughput and steps. A pure function of the
// status, so /metrics can say nothing `sparta-ctl status` does not.
#ifndef SPARTA_SCHEDULER_CLUSTER_METRICS_H_
#define SPARTA_SCHEDULER_CLUSTER_METRICS_H_

#include "common/metrics.h"
#include "sparta.pb.h"

namespace sparta {

// `serving_cluster`: a serving cluster's scheduler, which also reports the
// version its front-ends read at.
MetricWriter ClusterMetrics(const pb::ClusterStatus& status, bool serving_cluster);

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_CLUSTER_METRICS_H_
