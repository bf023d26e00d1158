// ShardedTables: a sparta-serve front-end's link to a serving cluster
// (serving.shards > 0). The cluster's sparta-server processes (started
// with --serving) restored a model version's sparse rows, sharded and
// replicated as in training; this front-end registers with the cluster's
// scheduler (role SERVING) and makes each model version it serves a
// ModelParameters that pulls a request's missing rows at that version
// through a KVClient and keeps hot rows in a RowCache per table. Dense
// tables, which every request reads whole, are pulled once per version.
//
// Following a job (serving.model: latest), the scheduler announces each
// newer version once every server has staged it (MODEL_VERSION; see
// scheduler/serving_follower.h). A thread of this class then makes the
// new version (its dense tables, empty caches) and hands it to `on_version`;
// a batch computed on the version before goes on reading that one, which
// the servers still hold.
//
// A server that dies is replaced in the next cluster view by its replicas
// (storage.replication_factor >= 2): the KVClient follows the views and
// resends what the dead one had not answered, so a request only waits.
//
// Owns its connections and thread; the versions it makes read through it,
// so it must outlive them. Thread-safe: a version's Gather() from any
// number of compute threads; the cluster's end (SHUTDOWN, or the scheduler
// lost) is reported to `on_end` once, from the connection's thread.
#ifndef SPARTA_WORKER_SERVING_SHARDED_TABLES_H_
#define SPARTA_WORKER_SERVING_SHARDED_TABLES_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/scheduler_client.h"
#include "sparta.pb.h"
#include "worker/kv_client.h"
#include "worker/serving/model_parameters.h"
#include "worker/serving/row_cache.h"

namespace sparta {

class ShardedTables {
 public:
  using VersionCallback = std::function<void(std::shared_ptr<const ModelParameters>)>;

  // Registers with the serving cluster at cluster.scheduler as front-end
  // `rank` (-1: any free one), waits for its view, and makes the version
  // it names (current()). serving.cache bytes of row caches are shared
  // among the sparse tables of `specs` (the model's, in its order) by
  // their row sizes. Each newer version announced later goes to
  // `on_version`, from this object's thread.
  static absl::StatusOr<std::shared_ptr<ShardedTables>> Connect(const Config& config,
                                                                const std::vector<pb::TableSpec>& specs, int rank,
                                                                std::function<void(const absl::Status&)> on_end,
                                                                VersionCallback on_version = nullptr);
  ~ShardedTables();

  // The newest version made.
  std::shared_ptr<const ModelParameters> current() const;
  // Waits up to `timeout` for a version newer than `version` to be made
  // (the servers no longer hold `version`: the announced one moved on
  // twice while this front-end was making the one between). Returns it,
  // or null.
  std::shared_ptr<const ModelParameters> AwaitNewer(uint64_t version, std::chrono::milliseconds timeout) const;

  // Over every sparse table's cache, of every version made.
  uint64_t cache_hits() const;
  uint64_t cache_misses() const;

 private:
  class Version;
  ShardedTables(const Config& config, std::vector<pb::TableSpec> specs);
  // Pulls version `version`'s dense tables and makes it (empty caches).
  absl::StatusOr<std::shared_ptr<const Version>> MakeVersion(uint64_t version);
  // A version announced (any thread): the switcher makes it if newer.
  void Want(uint64_t version);
  void Switch();  // the switcher thread

  const Config config_;
  const std::vector<pb::TableSpec> specs_;
  VersionCallback on_version_;
  zmq::context_t context_{1};
  std::unique_ptr<SchedulerClient> scheduler_;
  // Set once in Connect(); the scheduler client's thread reads it under the
  // lock (a view may arrive while it is being made), versions without.
  std::mutex client_mu_;
  std::unique_ptr<KVClient> client_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;  // wanted_ rose, a version was made, or stopping
  std::shared_ptr<const Version> current_;  // guarded by mu_
  uint64_t wanted_ = 0;                     // guarded by mu_: the newest version announced
  bool stopping_ = false;                   // guarded by mu_
  std::thread switcher_;
  // Cache figures of the versions replaced.
  std::atomic<uint64_t> retired_hits_{0}, retired_misses_{0};
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_SHARDED_TABLES_H_
