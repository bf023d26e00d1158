// ScoreOnHeldVersion: scores a batch on a model version that the serving
// cluster still holds.
//
// A serving cluster's servers keep the two newest versions. A front-end
// slower than the versions come (a long batch, a loaded machine) can start a
// batch on a version the servers drop while it computes: the sparse rows it
// then asks for are refused (OutOfRange). The batch is then computed again,
// wholly on the newest version (never some rows of one version and some of
// another), and again as often as the cluster moves on during that, until
// it lands on a held version or `deadline` has passed since the first
// refusal (then the refusal is the answer).
//
// A plain function of its arguments (no sockets, no threads of its own), so
// that the loop can be tested step by step; thread-safe if they are.
#ifndef SPARTA_WORKER_SERVING_HELD_VERSION_H_
#define SPARTA_WORKER_SERVING_HELD_VERSION_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/serving/model_parameters.h"
#include "worker/serving/request_batcher.h"

namespace sparta {

// Where newer versions come from.
struct VersionSource {
  // The newest version made in this process (may be null).
  std::function<std::shared_ptr<const ModelParameters>()> current;
  // Waits up to `timeout` for a version newer than `version` to be made
  // here, and returns it (null if none came). Empty for a front-end with
  // no serving cluster, whose versions nobody drops.
  std::function<std::shared_ptr<const ModelParameters>(uint64_t version, std::chrono::milliseconds timeout)>
      await_newer;
};

using ScoreFn = std::function<absl::StatusOr<std::vector<float>>(const ModelParameters& tables)>;

// The batch scored by `score` on `tables` or a newer version, with the
// version that scored it; `score`'s error if it is not OutOfRange, or
// OutOfRange once no newer version comes within `deadline`.
absl::StatusOr<RequestBatcher::Scored> ScoreOnHeldVersion(std::shared_ptr<const ModelParameters> tables,
                                                          const ScoreFn& score, const VersionSource& source,
                                                          std::chrono::steady_clock::duration deadline);

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_HELD_VERSION_H_
