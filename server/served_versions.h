// ServedVersions: the model versions a serving cluster's server can answer
// pulls at while it follows its training job (serving.model: latest): the
// version of the rows it holds (the base: the restored checkpoint's, then
// what it folded in), and the versions staged above it (VersionOverlay),
// each a delta on the one before.
//
// The scheduler announces a version once every live server has staged it
// (MODEL_VERSION); front-ends then pull at it. Some may still pull at the
// version announced before, so an announcement folds into the base only
// the versions up to that one: a server always answers the two newest
// announced versions, and a pull at an older one is refused (OutOfRange),
// never answered from a mix of versions.
//
// Not thread-safe: the server's I/O thread owns it.
#ifndef SPARTA_SERVER_SERVED_VERSIONS_H_
#define SPARTA_SERVER_SERVED_VERSIONS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "server/version_overlay.h"

namespace sparta {

class ServedVersions {
 public:
  // `restored`: the version of the rows the server restored.
  explicit ServedVersions(uint64_t restored) : base_(restored), announced_(restored) {}

  uint64_t base() const { return base_; }
  uint64_t announced() const { return announced_; }
  // The newest version staged (the base's, before any delta).
  uint64_t staged() const { return overlays_.empty() ? base_ : overlays_.back()->version(); }

  // The overlays a pull at `version` (0: the one announced) reads, newest
  // first; OutOfRange if this server does not hold that version.
  absl::StatusOr<std::vector<std::shared_ptr<const VersionOverlay>>> For(uint64_t version) const;

  // Adds a version read from its delta. It must go on from staged(); one
  // already staged is a no-op.
  absl::Status Stage(std::shared_ptr<const VersionOverlay> overlay);

  // `version` is announced. Returns the overlays to fold into the rows now,
  // oldest first (those up to the version announced before), which no
  // pull routed from here on is given.
  std::vector<std::shared_ptr<const VersionOverlay>> Announce(uint64_t version);

 private:
  uint64_t base_;
  uint64_t announced_;
  std::vector<std::shared_ptr<const VersionOverlay>> overlays_;  // oldest first
};

}  // namespace sparta

#endif  // SPARTA_SERVER_SERVED_VERSIONS_H_
