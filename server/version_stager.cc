#include "server/version_stager.h"

#include <chrono>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"

namespace sparta {

VersionStager::VersionStager(uint64_t restored, std::function<void()> wake)
    : versions_(restored), wake_(std::move(wake)), staged_(restored) {}

VersionStager::~VersionStager() {
  if (reader_.joinable()) reader_.join();
}

pb::Header VersionStager::Staged(uint64_t version, const absl::Status& status) {
  pb::Header h;
  h.set_type(pb::VERSION_STAGED);
  h.mutable_checkpoint()->set_version(version);
  if (!status.ok()) {
    h.set_status(static_cast<int32_t>(status.code()));
    h.set_error(std::string(status.message()));
  }
  return h;
}

std::optional<pb::Header> VersionStager::Start(const pb::CheckpointInfo& ask, uint32_t num_shards,
                                               std::function<bool(uint32_t)> holds,
                                               std::function<uint32_t(uint32_t)> dim_of) {
  if (ask.version() <= versions_.staged()) return Staged(ask.version(), absl::OkStatus());
  if (reading_ != 0) return std::nullopt;  // answered when the read is done
  // A checkpoint replaces every shard held, so it goes on from whatever is
  // staged; a delta only from its base.
  const bool checkpoint = ask.delta_dir().empty();
  if (!checkpoint && ask.base() != versions_.staged()) {
    return Staged(ask.version(), absl::FailedPreconditionError(absl::StrCat(
                                     "model version ", ask.version(), " goes on from ", ask.base(),
                                     "; this server has staged ", versions_.staged())));
  }
  if (reader_.joinable()) reader_.join();
  reading_ = ask.version();
  reader_ = std::thread([this, checkpoint, base = versions_.staged(), num_shards,
                         dir = checkpoint ? ask.dir() : ask.delta_dir(), holds = std::move(holds),
                         dim_of = std::move(dim_of)] {
    const auto start = std::chrono::steady_clock::now();
    auto overlay = checkpoint ? VersionOverlay::ReadCheckpoint(dir, base, num_shards, holds, dim_of)
                              : VersionOverlay::Read(dir, holds, dim_of);
    if (overlay.ok()) {
      spdlog::info("read model version {} from {}: {} {}{} rows of the shards held here, in {:.3f} s",
                   (*overlay)->version(), dir, checkpoint ? "a checkpoint, all" : "the", (*overlay)->rows(),
                   checkpoint ? "" : " changed",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      read_ = std::move(overlay);
    }
    wake_();
  });
  return std::nullopt;
}

std::optional<pb::Header> VersionStager::Finish() {
  std::optional<absl::StatusOr<std::shared_ptr<const VersionOverlay>>> read;
  {
    std::lock_guard<std::mutex> lock(mu_);
    read.swap(read_);
  }
  if (!read.has_value()) return std::nullopt;
  const uint64_t version = reading_;
  reading_ = 0;
  absl::Status st = read->status();
  if (st.ok()) st = versions_.Stage(**read);
  if (!st.ok()) {
    // The scheduler decides what next (the delta may have been pruned
    // while it was read); what is served is untouched.
    spdlog::warn("model version {} not staged: {}", version, std::string(st.message()));
  } else {
    staged_.store(versions_.staged(), std::memory_order_relaxed);
  }
  return Staged(version, st);
}

}  // namespace sparta
