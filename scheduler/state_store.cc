#include "scheduler/state_store.h"

#include "common/rocks_log.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace sparta {
namespace {
constexpr char kStateKey[] = "state";
}  // namespace

absl::StatusOr<std::unique_ptr<StateStore>> LocalStateStore::Open(const std::string& dir) {
  std::filesystem::create_directories(dir);
  rocksdb::Options options;
  options.info_log = SharedRocksLog();  // not a LOG file: see common/rocks_log.h
  options.create_if_missing = true;
  options.write_buffer_size = 1 << 20;  // a few KB of state
  rocksdb::DB* db = nullptr;
  const rocksdb::Status st = rocksdb::DB::Open(options, dir, &db);
  if (!st.ok()) return absl::UnavailableError(absl::StrCat("opening the scheduler's state in ", dir, ": ", st.ToString()));
  return std::unique_ptr<StateStore>(new LocalStateStore(std::unique_ptr<rocksdb::DB>(db), dir));
}

absl::Status LocalStateStore::Save(const pb::SchedulerState& state) {
  rocksdb::WriteOptions options;
  options.sync = true;  // the nodes act on what the scheduler said: it must survive it
  const rocksdb::Status st = db_->Put(options, kStateKey, state.SerializeAsString());
  if (!st.ok()) return absl::UnavailableError(absl::StrCat("saving the scheduler's state: ", st.ToString()));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<pb::SchedulerState>> LocalStateStore::Load() {
  std::string bytes;
  const rocksdb::Status st = db_->Get(rocksdb::ReadOptions(), kStateKey, &bytes);
  if (st.IsNotFound()) return std::optional<pb::SchedulerState>();
  if (!st.ok()) return absl::UnavailableError(absl::StrCat("reading the scheduler's state: ", st.ToString()));
  auto state = ParseSchedulerState(bytes, dir_);
  if (!state.ok()) return state.status();
  return std::optional<pb::SchedulerState>(*std::move(state));
}

absl::StatusOr<pb::SchedulerState> ParseSchedulerState(const std::string& bytes, const std::string& where) {
  pb::SchedulerState state;
  if (!state.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("the scheduler's saved state in ", where, " is corrupt"));
  }
  return state;
}

}  // namespace sparta
