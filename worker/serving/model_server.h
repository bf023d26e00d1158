// ModelServer: sparta-serve's process. It loads the job's model (built-in
// or plugin: only its forward path runs) and one version of its
// parameters: embedded (serving.shards: 0) from a checkpoint
// (serving.model), holding every table in memory; or, with serving.shards
// > 0, from the serving cluster at cluster.scheduler (ShardedTables),
// which follows the job too when its servers do (serving.model: latest). It
// answers predictions over HTTP on
// serving.port (PredictApi) and over ZeroMQ on serving.zmq_port
// (ZmqPredictEndpoint), computed by serving.threads compute threads that
// batch concurrent requests (RequestBatcher).
//
// With serving.model: latest it follows the job: a thread looks for newer
// versions every serving.poll_interval (complete checkpoints, and the
// deltas a job with serving.publish_every publishes: version_plan.h),
// makes the newest it can reach beside the version being served (applying
// deltas shares the rows they do not change), and swaps it in at once (a
// batch runs wholly on one version, and every answer names the version
// that computed it). A version that fails to load (deleted by storage.keep
// while being read) is logged and skipped; the current one goes on being
// served.
//
// Owns everything it starts. Thread-safe: the HTTP server's threads and the
// compute threads share it; Stop() may be called from any thread.
#ifndef SPARTA_WORKER_SERVING_MODEL_SERVER_H_
#define SPARTA_WORKER_SERVING_MODEL_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/metrics.h"
#include "sparta/sdk/model.h"
#include "worker/serving/predict_api.h"
#include "worker/serving/predictor.h"
#include "worker/serving/request_batcher.h"
#include "worker/serving/serving_tables.h"
#include "worker/serving/sharded_tables.h"
#include "worker/serving/zmq_predict_endpoint.h"

namespace httplib {
class Server;
}

namespace sparta {

class ModelServer {
 public:
  // Loads the model and its version and starts answering on serving.port.
  // `rank`: this front-end's (--rank), which a serving cluster's scheduler
  // names it by; -1: any.
  static absl::StatusOr<std::unique_ptr<ModelServer>> Start(const Config& config, int rank = -1);
  ~ModelServer();

  int port() const { return port_; }
  // The ZeroMQ endpoint's port; 0 with serving.zmq_port: -1.
  uint32_t zmq_port() const { return zmq_ ? zmq_->port() : 0; }
  const std::string& model_name() const { return api_->model_name(); }
  // Stops accepting HTTP requests and lets those in progress finish; the
  // ZeroMQ endpoint closes with the server (its answers in flight first).
  void Stop();
  // serving.shards > 0: the serving cluster has stopped (or its scheduler
  // is gone), so this front-end has nothing left to serve (any thread).
  bool cluster_ended() const { return cluster_ended_.load(std::memory_order_acquire); }
  // serving.shards > 0: this front-end belongs to a serving cluster. On
  // SIGTERM it asks the scheduler to let it go, and is gone from the
  // cluster once cluster_ended().
  bool in_cluster() const { return sharded_ != nullptr; }

 private:
  ModelServer(const Config& config, int rank);
  absl::Status Load();
  absl::Status Listen();
  // "latest" -> the newest complete checkpoint's folder; else serving.model.
  absl::StatusOr<std::string> ResolveModelDir() const;
  // The follower thread's loop (serving.model: latest).
  void Follow();
  // One look for newer versions, and the swap to the newest reachable.
  // The follower thread (or Load(), before it starts). Returns why a
  // version was not made (FailedPrecondition: the model does not match the
  // job's tables), after swapping in whatever newer version it did make.
  absl::Status Advance();
  // The version being served; null (version 0) before the first is loaded.
  std::shared_ptr<const ModelParameters> Current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return tables_;
  }
  uint64_t version() const {
    auto tables = Current();
    return tables ? tables->version() : 0;
  }

  const Config config_;
  const int rank_;
  std::unique_ptr<Model> model_;
  std::vector<pb::TableSpec> specs_;
  mutable std::mutex mu_;
  std::shared_ptr<const ModelParameters> tables_;  // the version being served
  std::shared_ptr<const ShardedTables> sharded_;   // serving.shards > 0: where tables_ comes from
  std::atomic<bool> cluster_ended_{false};         // set by sharded_'s connection thread
  absl::flat_hash_set<uint64_t> unreadable_;     // checkpoints that failed to load (follower thread)
  bool stopping_ = false;                        // under mu_
  std::condition_variable stop_cv_;
  std::thread follower_;
  std::atomic<uint64_t> loads_{0}, failed_loads_{0}, deltas_{0};
  std::vector<std::unique_ptr<Predictor>> predictors_;  // one per compute thread
  std::unique_ptr<RequestBatcher> batcher_;
  std::unique_ptr<PredictApi> api_;
  MetricsRegistry metrics_;
  std::unique_ptr<ZmqPredictEndpoint> zmq_;
  std::unique_ptr<httplib::Server> http_;
  std::thread http_thread_;
  int port_ = 0;
};

// serving.name, or the model's own name: model.name, or the plugin file's
// name without "lib" and ".so".
std::string ServedModelName(const Config& config);

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_MODEL_SERVER_H_
