// EtcdStateStore: the scheduler's state as one etcd key (<prefix>state),
// for cluster.coordination: etcd://... The state outlives the scheduler's
// host, so a standby on another machine takes the job over from it.
//
// Every write is guarded by the writer's leadership (scheduler/leadership.h):
// a scheduler that no longer leads gets FailedPrecondition and must stop,
// and cannot overwrite what the new leader saved.
//
// Not thread-safe: the scheduler's single thread uses it.
#ifndef SPARTA_SCHEDULER_ETCD_STATE_STORE_H_
#define SPARTA_SCHEDULER_ETCD_STATE_STORE_H_

#include <string>

#include "scheduler/etcd_client.h"
#include "scheduler/leadership.h"
#include "scheduler/state_store.h"

namespace sparta {

class EtcdStateStore : public StateStore {
 public:
  // Neither is owned; both must outlive this.
  EtcdStateStore(EtcdClient* etcd, const Leadership* leadership)
      : etcd_(etcd), leadership_(leadership), key_(leadership->Key("state")) {}

  absl::Status Save(const pb::SchedulerState& state) override;
  absl::StatusOr<std::optional<pb::SchedulerState>> Load() override;
  std::string where() const override { return "etcd key " + key_; }

 private:
  EtcdClient* const etcd_;
  const Leadership* const leadership_;
  const std::string key_;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_ETCD_STATE_STORE_H_
