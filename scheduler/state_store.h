// StateStore: where the scheduler keeps one record, pb::SchedulerState,
// written whenever the cluster's state changes (registrations, views,
// reports), so that a scheduler killed at any moment can be replaced and
// the new one take over the running job from the last state it acted on.
//
//   LocalStateStore: a small RocksDB in <storage.path>/scheduler, written
//     synchronously through the log (cluster.coordination: local); it
//     survives the scheduler's process, not its disk.
//   EtcdStateStore (scheduler/etcd_state_store.h): a key in etcd, written
//     only while this scheduler leads (cluster.coordination: etcd://...);
//     it survives the scheduler's host.
//
// Not thread-safe: used by the scheduler's single thread.
#ifndef SPARTA_SCHEDULER_STATE_STORE_H_
#define SPARTA_SCHEDULER_STATE_STORE_H_

#include <memory>
#include <optional>
#include <string>

#include <rocksdb/db.h>

#include "absl/status/statusor.h"
#include "sparta.pb.h"

namespace sparta {

class StateStore {
 public:
  virtual ~StateStore() = default;
  // FailedPrecondition: this scheduler may no longer write (another leads).
  virtual absl::Status Save(const pb::SchedulerState& state) = 0;
  // The saved state, if any.
  virtual absl::StatusOr<std::optional<pb::SchedulerState>> Load() = 0;
  // Where the state lives, for logs.
  virtual std::string where() const = 0;
};

class LocalStateStore : public StateStore {
 public:
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& dir);

  absl::Status Save(const pb::SchedulerState& state) override;
  absl::StatusOr<std::optional<pb::SchedulerState>> Load() override;
  std::string where() const override { return dir_; }

 private:
  LocalStateStore(std::unique_ptr<rocksdb::DB> db, std::string dir) : db_(std::move(db)), dir_(std::move(dir)) {}
  std::unique_ptr<rocksdb::DB> db_;
  const std::string dir_;
};

// The bytes of a saved state, back (DataLoss if they are not one); shared
// by the stores.
absl::StatusOr<pb::SchedulerState> ParseSchedulerState(const std::string& bytes, const std::string& where);

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_STATE_STORE_H_
