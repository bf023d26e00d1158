#include "worker/serving/held_version.h"

#include <utility>

namespace sparta {

absl::StatusOr<RequestBatcher::Scored> ScoreOnHeldVersion(std::shared_ptr<const ModelParameters> tables,
                                                          const ScoreFn& score, const VersionSource& source,
                                                          std::chrono::steady_clock::duration deadline) {
  auto probs = score(*tables);
  if (absl::IsOutOfRange(probs.status())) {
    // The deadline counts from the first refusal: a batch that was never
    // refused pays no clock read.
    const auto give_up = std::chrono::steady_clock::now() + deadline;
    while (absl::IsOutOfRange(probs.status())) {
      std::shared_ptr<const ModelParameters> newer = source.current();
      if ((newer == nullptr || newer->version() <= tables->version()) && source.await_newer) {
        // Not made here yet: it is on its way (ShardedTables::Switch).
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        newer = source.await_newer(tables->version(), left);
      }
      if (newer == nullptr || newer->version() <= tables->version()) break;
      tables = std::move(newer);
      probs = score(*tables);
    }
  }
  if (!probs.ok()) return probs.status();
  return RequestBatcher::Scored{.probs = *std::move(probs), .version = tables->version()};
}

}  // namespace sparta
