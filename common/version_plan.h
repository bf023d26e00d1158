// PlanVersions: how a serving process following a job (serving.model:
// latest: sparta-serve's ModelServer, or a serving cluster's scheduler,
// scheduler/serving_follower.h) gets from the version it serves to the
// newest one it can reach, given the complete checkpoints and published
// deltas on disk
// (common/delta_files.h): from what it serves, from a checkpoint, or from
// the empty model, then through the deltas that chain on from there (each
// delta's base is the version before it). It picks the start that reaches
// the highest version, and among those the cheapest: what it serves, then
// the newest checkpoint, then the empty model.
//
// A pure function: unit-tested without files.
#ifndef SPARTA_COMMON_VERSION_PLAN_H_
#define SPARTA_COMMON_VERSION_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/delta_files.h"

namespace sparta {

struct VersionPlan {
  enum class Start { kNothing, kCurrent, kCheckpoint, kEmpty };
  Start start = Start::kNothing;  // kNothing: no newer version is reachable
  uint64_t checkpoint = 0;        // kCheckpoint: its version
  std::vector<DeltaRef> deltas;   // applied in order after the start
  uint64_t target = 0;            // the version reached
};

// `current`: the version served (none before the first); `checkpoints`:
// the versions of the complete checkpoints that may be loaded.
VersionPlan PlanVersions(std::optional<uint64_t> current, const std::vector<uint64_t>& checkpoints,
                         const std::vector<DeltaRef>& deltas);

}  // namespace sparta

#endif  // SPARTA_COMMON_VERSION_PLAN_H_
