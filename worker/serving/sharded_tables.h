// ShardedTables: the model version a serving cluster holds (serving.shards
// > 0), read by a sparta-serve front-end. The cluster's sparta-server
// processes (started with --serving) restored the version's sparse rows,
// sharded and replicated as in training; this front-end registers with the
// cluster's scheduler (role SERVING), pulls each request's missing rows
// through a KVClient, and keeps hot rows in a RowCache per table. Dense
// tables, which every request reads whole, are pulled once at the start.
//
// A server that dies is replaced in the next cluster view by its replicas
// (storage.replication_factor >= 2): the KVClient follows the views and
// resends what the dead one had not answered, so a request only waits.
//
// Owns its connections. Thread-safe: Gather() from any number of compute
// threads; the cluster's end (SHUTDOWN, or the scheduler lost) is reported
// to `on_end` once, from the connection's thread.
#ifndef SPARTA_WORKER_SERVING_SHARDED_TABLES_H_
#define SPARTA_WORKER_SERVING_SHARDED_TABLES_H_

#include <functional>
#include <memory>
#include <mutex>
#include <string>
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

class ShardedTables : public ModelParameters {
 public:
  // Registers with the serving cluster at cluster.scheduler as front-end
  // `rank` (-1: any free one), waits for its view, and pulls the dense
  // tables of `specs` (the model's, in its order). serving.cache bytes of
  // row caches are shared among the sparse tables by their row sizes.
  static absl::StatusOr<std::shared_ptr<ShardedTables>> Connect(const Config& config,
                                                                const std::vector<pb::TableSpec>& specs, int rank,
                                                                std::function<void(const absl::Status&)> on_end);
  ~ShardedTables() override;

  uint64_t version() const override { return version_; }
  uint64_t rows() const override;
  bool is_dense(size_t t) const override { return specs_[t].kind() == pb::TableSpec::DENSE; }
  std::span<const float> Dense(size_t t) const override { return dense_[t]; }
  absl::Status Gather(size_t t, std::span<const uint64_t> keys, std::vector<float>* out) const override;

  // Over every sparse table's cache.
  uint64_t cache_hits() const;
  uint64_t cache_misses() const;

 private:
  ShardedTables(const Config& config, std::vector<pb::TableSpec> specs);

  const Config config_;
  const std::vector<pb::TableSpec> specs_;
  zmq::context_t context_{1};
  std::unique_ptr<SchedulerClient> scheduler_;
  // Set once in Connect(); the scheduler client's thread reads it under the
  // lock (a view may arrive while it is being made), Gather() without.
  std::mutex client_mu_;
  std::unique_ptr<KVClient> client_;
  uint64_t version_ = 0;
  std::vector<std::vector<float>> dense_;           // by table: the dense tables' floats
  std::vector<std::unique_ptr<RowCache>> caches_;  // by table: the sparse tables' caches
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_SHARDED_TABLES_H_
