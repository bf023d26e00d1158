#include "scheduler/etcd_state_store.h"

#include "absl/strings/str_cat.h"

namespace sparta {

absl::Status EtcdStateStore::Save(const pb::SchedulerState& state) {
  etcd::TxnRequest txn;
  leadership_->Guard(&txn);
  etcd::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(state.SerializeAsString());
  auto done = etcd_->Txn(txn);
  if (!done.ok()) return absl::UnavailableError(absl::StrCat("saving the scheduler's state: ", done.status().message()));
  if (!done->succeeded()) {
    return absl::FailedPreconditionError("another scheduler leads the job now (this one's etcd lease is gone)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<pb::SchedulerState>> EtcdStateStore::Load() {
  auto kv = etcd_->Get(key_);
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return std::optional<pb::SchedulerState>();
  auto state = ParseSchedulerState((*kv)->value(), where());
  if (!state.ok()) return state.status();
  return std::optional<pb::SchedulerState>(*std::move(state));
}

}  // namespace sparta
