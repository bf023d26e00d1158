// StateStore: the scheduler's small RocksDB (<storage.path>/scheduler), one
// record holding pb::SchedulerState. Written whenever the cluster's state
// changes (registrations, views, reports), synchronously through the log,
// so that a scheduler killed at any moment can be restarted and take over
// the running job from the last state it acted on.
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
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& dir);

  absl::Status Save(const pb::SchedulerState& state);
  // The saved state, if any.
  absl::StatusOr<std::optional<pb::SchedulerState>> Load();

 private:
  explicit StateStore(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_STATE_STORE_H_
