// VersionStager: a serving cluster's server's side of following its
// training job (serving.model: latest). The scheduler asks every server to
// stage each published delta (STAGE_VERSION), or a checkpoint where no
// delta goes on from the version served; the stager reads the rows of the
// shards the server holds on a thread of its own, so the
// server goes on answering, and adds them to the versions it can answer at
// (ServedVersions), then says so (VERSION_STAGED). Asked again for a
// version it has staged, it says so again: the scheduler repeats its asks
// in heartbeat echoes, in case one was lost.
//
// Owned by the server's I/O thread, which calls every method; `wake` is
// called on the staging thread when a read is done, and Finish() then
// takes it on the I/O thread. Heartbeat figures are atomics, read by any.
#ifndef SPARTA_SERVER_VERSION_STAGER_H_
#define SPARTA_SERVER_VERSION_STAGER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/status/statusor.h"
#include "server/served_versions.h"
#include "server/version_overlay.h"
#include "sparta.pb.h"

namespace sparta {

class VersionStager {
 public:
  // `restored`: the version of the rows the server restored.
  VersionStager(uint64_t restored, std::function<void()> wake);
  ~VersionStager();  // waits for a read under way
  VersionStager(const VersionStager&) = delete;
  VersionStager& operator=(const VersionStager&) = delete;

  ServedVersions& versions() { return versions_; }

  // A STAGE_VERSION (or an echo repeating it): starts reading the delta
  // (`delta_dir`) if it is the next version, or the checkpoint (`dir`, no
  // delta_dir) if it is newer than what is staged, and no read is under
  // way. Returns the VERSION_STAGED to send now, if the answer is known
  // already (staged before, or a delta that does not go on from what is
  // staged). `num_shards`: the cluster's (a checkpoint's must match).
  std::optional<pb::Header> Start(const pb::CheckpointInfo& ask, uint32_t num_shards,
                                  std::function<bool(uint32_t shard)> holds,
                                  std::function<uint32_t(uint32_t table)> dim_of);
  // After `wake`: stages what was read. Returns the VERSION_STAGED to send
  // (none if no read had finished).
  std::optional<pb::Header> Finish();

  uint64_t staged_version() const { return staged_.load(std::memory_order_relaxed); }

 private:
  static pb::Header Staged(uint64_t version, const absl::Status& status);

  ServedVersions versions_;
  const std::function<void()> wake_;
  std::thread reader_;
  uint64_t reading_ = 0;  // the version being read (0: none)
  std::mutex mu_;
  std::optional<absl::StatusOr<std::shared_ptr<const VersionOverlay>>> read_;  // guarded by mu_
  std::atomic<uint64_t> staged_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_VERSION_STAGER_H_
