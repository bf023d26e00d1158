// ControlClient: an operator's connection to a running job's scheduler
// (sparta-ctl): status, checkpoint, stop. It is not a node of the cluster:
// the scheduler answers it on its ROUTER socket without registering it.
// With cluster.auth: curve it presents the cluster's keys, as a node does.
//
// One DEALER socket; not thread-safe.
#ifndef SPARTA_CTL_CONTROL_CLIENT_H_
#define SPARTA_CTL_CONTROL_CLIENT_H_

#include <chrono>
#include <string>

#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta.pb.h"

namespace sparta {

class ControlClient {
 public:
  // `cluster`: the scheduler address and the auth settings.
  ControlClient(const ClusterConfig& cluster, std::chrono::milliseconds timeout);

  absl::StatusOr<pb::ClusterStatus> Status();
  absl::Status Checkpoint();
  absl::Status Stop();
  // Node `role`-`rank` is to leave the job (sparta-ctl drain).
  absl::Status Drain(pb::Role role, int rank);
  // The job is to run on `servers` servers (sparta-ctl scale). Returns what
  // the scheduler does about it, for the operator, and how many servers to
  // start for it (with --join).
  struct ScaleAnswer {
    std::string what;
    uint32_t to_start = 0;
  };
  absl::StatusOr<ScaleAnswer> Scale(uint32_t servers);

 private:
  // Sends a request with no payload and waits for the one reply.
  absl::StatusOr<pb::Header> Call(pb::MsgType type);
  absl::StatusOr<pb::Header> Call(pb::Header request);

  const ClusterConfig cluster_;
  const std::chrono::milliseconds timeout_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  bool connected_ = false;
};

}  // namespace sparta

#endif  // SPARTA_CTL_CONTROL_CLIENT_H_
