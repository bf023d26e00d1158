#include "common/version_plan.h"

#include <map>

namespace sparta {

VersionPlan PlanVersions(std::optional<uint64_t> current, const std::vector<uint64_t>& checkpoints,
                         const std::vector<DeltaRef>& deltas) {
  // The delta that goes on from each version; of two (a job restored from
  // an older checkpoint started another history), the newer.
  std::map<uint64_t, const DeltaRef*> from;
  for (const DeltaRef& d : deltas) {
    if (d.version <= d.base) continue;  // not a step forward: ignored
    auto [it, inserted] = from.try_emplace(d.base, &d);
    if (!inserted && it->second->version < d.version) it->second = &d;
  }
  auto chain = [&](uint64_t start) {
    std::vector<DeltaRef> steps;
    uint64_t v = start;
    for (auto it = from.find(v); it != from.end(); it = from.find(v)) {
      steps.push_back(*it->second);
      v = it->second->version;
    }
    return steps;
  };
  auto reach = [](uint64_t start, const std::vector<DeltaRef>& steps) {
    return steps.empty() ? start : steps.back().version;
  };
  VersionPlan best;  // kNothing until a start reaches past what is served
  auto consider = [&](VersionPlan::Start start, uint64_t version) {
    std::vector<DeltaRef> steps = chain(version);
    const uint64_t r = reach(version, steps);
    if (start == VersionPlan::Start::kEmpty && steps.empty()) return;  // the empty model is no version
    if (current && r <= *current) return;
    if (best.start != VersionPlan::Start::kNothing && r <= best.target) return;  // a cheaper start reaches as far
    best = VersionPlan{start, start == VersionPlan::Start::kCheckpoint ? version : 0, std::move(steps), r};
  };
  if (current) consider(VersionPlan::Start::kCurrent, *current);
  for (auto c = checkpoints.rbegin(); c != checkpoints.rend(); ++c) consider(VersionPlan::Start::kCheckpoint, *c);
  consider(VersionPlan::Start::kEmpty, 0);
  return best;
}

}  // namespace sparta
