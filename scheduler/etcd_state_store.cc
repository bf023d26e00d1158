#include "scheduler/etcd_state_store.h"

#include <zlib.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sparta {
namespace {

// etcd refuses a request over --max-request-bytes (1.5 MiB by default); a
// value goes base64-encoded through the JSON gateway, 4 bytes for 3.
constexpr size_t kMaxValueBytes = 1024 * 1024;

std::string Deflate(const std::string& raw) {
  uLongf size = compressBound(raw.size());
  std::string out(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(out.data()), &size, reinterpret_cast<const Bytef*>(raw.data()), raw.size(),
                Z_BEST_SPEED) != Z_OK) {
    return std::string();
  }
  out.resize(size);
  return out;
}

double MiB(size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

absl::Status EtcdStateStore::Save(const pb::SchedulerState& state) {
  const std::string raw = state.SerializeAsString();
  pb::StoredSchedulerState stored;
  stored.set_size(raw.size());
  stored.set_deflated(Deflate(raw));
  if (stored.deflated().empty()) return absl::InternalError("saving the scheduler's state: zlib failed");
  std::string value = stored.SerializeAsString();
  if (value.size() > kMaxValueBytes) {
    // Not FailedPrecondition: the scheduler goes on leading, but a standby
    // could take over only from an older state, or none.
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the scheduler's state is %.1f MiB (%.1f MiB compressed), more than etcd takes in one request: a standby "
        "could not take this job over. Fewer work units make it smaller (a larger data.split_size, fewer input "
        "files or epochs)",
        MiB(raw.size()), MiB(value.size())));
  }
  etcd::TxnRequest txn;
  leadership_->Guard(&txn);
  etcd::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(std::move(value));
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
  pb::StoredSchedulerState stored;
  std::string raw;
  bool whole = stored.ParseFromString((*kv)->value());
  if (whole) {
    // The size comes from etcd, which only a leader writes; still bounded,
    // as a corrupt value must not allocate without limit.
    uLongf size = stored.size();
    whole = size <= (uLongf{1} << 32);
    if (whole) {
      raw.resize(size);
      whole = uncompress(reinterpret_cast<Bytef*>(raw.data()), &size,
                         reinterpret_cast<const Bytef*>(stored.deflated().data()), stored.deflated().size()) == Z_OK &&
              size == stored.size();
    }
  }
  if (!whole) return absl::DataLossError(absl::StrCat("the scheduler's saved state in ", where(), " is corrupt"));
  auto state = ParseSchedulerState(raw, where());
  if (!state.ok()) return state.status();
  return std::optional<pb::SchedulerState>(*std::move(state));
}

}  // namespace sparta
