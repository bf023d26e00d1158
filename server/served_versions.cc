#include "server/served_versions.h"

#include "absl/strings/str_cat.h"

namespace sparta {

absl::StatusOr<std::vector<std::shared_ptr<const VersionOverlay>>> ServedVersions::For(uint64_t version) const {
  if (version == 0) version = announced_;
  if (version < base_ || version > staged()) {
    return absl::OutOfRangeError(absl::StrCat("model version ", version, " is not held by this server (it holds ",
                                              base_, " to ", staged(), "; ", announced_, " is announced)"));
  }
  std::vector<std::shared_ptr<const VersionOverlay>> read;
  for (auto it = overlays_.rbegin(); it != overlays_.rend(); ++it) {
    if ((*it)->version() <= version) read.push_back(*it);
  }
  return read;
}

absl::Status ServedVersions::Stage(std::shared_ptr<const VersionOverlay> overlay) {
  if (overlay->version() <= staged()) return absl::OkStatus();
  if (overlay->base() != staged()) {
    return absl::FailedPreconditionError(absl::StrCat("model version ", overlay->version(), " goes on from ",
                                                      overlay->base(), "; this server has staged ", staged()));
  }
  overlays_.push_back(std::move(overlay));
  return absl::OkStatus();
}

std::vector<std::shared_ptr<const VersionOverlay>> ServedVersions::Announce(uint64_t version) {
  std::vector<std::shared_ptr<const VersionOverlay>> fold;
  if (version <= announced_) return fold;
  const uint64_t keep_from = announced_;  // still read by front-ends that have not switched yet
  announced_ = version;
  size_t n = 0;
  while (n < overlays_.size() && overlays_[n]->version() <= keep_from) ++n;
  fold.assign(overlays_.begin(), overlays_.begin() + static_cast<long>(n));
  overlays_.erase(overlays_.begin(), overlays_.begin() + static_cast<long>(n));
  if (!fold.empty()) base_ = fold.back()->version();
  return fold;
}

}  // namespace sparta
