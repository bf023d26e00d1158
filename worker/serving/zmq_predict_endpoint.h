// ZmqPredictEndpoint: sparta-serve's ZeroMQ endpoint (serving.zmq_port),
// for clients that want predictions without HTTP and JSON. It speaks
// Sparta's own wire format (common/message.h), on a ROUTER socket, so one
// client connection may keep many requests in flight:
//
//   PREDICT   header: model (the NAME), deadline_ms (0: serving.deadline),
//             num_keys = n; one frame: n input lines in the job's format,
//             each ended by '\n'.
//   RESPONSE  status (absl::StatusCode) and error; when OK, model_version
//             and one frame of n FP32 predictions (dim 1), in order; seq
//             echoes the request's, so a client can match answers.
//   HEARTBEAT answered by a RESPONSE with the loaded model_version (0:
//             none yet): the health check of a client balancing replicas.
//
// The requests go through the same PredictApi as HTTP (same parsing,
// batching, deadlines, metrics). A malformed message is dropped and
// logged. With cluster.auth: curve the socket is a CURVE server, and only
// clients that hold the cluster's keys connect.
//
// Owns a thread that owns the socket. Start() and the destructor from one
// thread; the PredictApi must outlive the endpoint.
#ifndef SPARTA_WORKER_SERVING_ZMQ_PREDICT_ENDPOINT_H_
#define SPARTA_WORKER_SERVING_ZMQ_PREDICT_ENDPOINT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "common/cluster_auth.h"
#include "common/config.h"
#include "common/mailbox.h"
#include "common/message.h"
#include "common/predict_message.h"
#include "worker/serving/predict_api.h"

namespace sparta {


// The RESPONSE header that answers request `seq` with `outcome`; its one
// frame (when OK) is FrameFromVector(outcome.probs).
pb::Header PredictReplyHeader(const PredictOutcome& outcome, uint64_t seq);

class ZmqPredictEndpoint {
 public:
  // Binds cluster.host:serving.zmq_port (0: a port the OS picks) and
  // starts answering. `version` says which model version is loaded.
  static absl::StatusOr<std::unique_ptr<ZmqPredictEndpoint>> Start(const Config& config, PredictApi* api,
                                                                   std::function<uint64_t()> version);
  ~ZmqPredictEndpoint();
  ZmqPredictEndpoint(const ZmqPredictEndpoint&) = delete;
  ZmqPredictEndpoint& operator=(const ZmqPredictEndpoint&) = delete;

  uint32_t port() const { return port_; }
  uint64_t malformed() const { return malformed_.load(std::memory_order_relaxed); }

 private:
  // An answer on its way from a compute thread to the socket's thread.
  struct Reply {
    std::string routing_id;
    pb::Header header;
    std::vector<float> probs;
  };
  ZmqPredictEndpoint(PredictApi* api, std::function<uint64_t()> version);
  void Run();
  void Handle(Message request);
  void Send(Reply reply);

  PredictApi* const api_;
  const std::function<uint64_t()> version_;
  zmq::context_t context_{1};
  std::unique_ptr<ZapAuthenticator> zap_;
  zmq::socket_t socket_;
  uint32_t port_ = 0;
  Mailbox<Reply> replies_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> malformed_{0};
  std::thread thread_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_ZMQ_PREDICT_ENDPOINT_H_
