// PredictClient: sends prediction requests to a set of sparta-serve
// replicas (front-ends serving the same model) and spreads them by least
// outstanding requests: the replica with the fewest requests in flight
// gets the next one, so a slow replica gets fewer.
//
// A request that fails (no connection, a 5xx, no answer in time) is tried
// once more on another replica, within what is left of its deadline; a 4xx
// is the request's own fault and is not retried. A replica that failed gets
// no more requests until its /healthz answers again (asked at most once per
// `recheck`, by the request that would otherwise have no replica).
//
// ReplicaChooser is that choice without sockets; PredictClient adds HTTP.
// Both thread-safe: one client serves many sending threads.
#ifndef SPARTA_CTL_PREDICT_CLIENT_H_
#define SPARTA_CTL_PREDICT_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sparta {

class ReplicaChooser {
 public:
  using Clock = std::chrono::steady_clock;
  struct Choice {
    size_t replica = 0;
    bool check_health_first = false;  // a replica marked down whose recheck is due
  };

  ReplicaChooser(size_t replicas, Clock::duration recheck) : replicas_(replicas), recheck_(recheck) {}

  // The replica for the next attempt (not `exclude`), its request counted
  // as outstanding until Done(); none if every other replica is down and
  // not yet due for a recheck.
  std::optional<Choice> Pick(std::optional<size_t> exclude, Clock::time_point now);
  // The attempt on `replica` ended; `ok` false marks it down.
  void Done(size_t replica, bool ok, Clock::time_point now);
  // Its health check answered (up again), or not (down until the next recheck).
  void HealthChecked(size_t replica, bool up, Clock::time_point now);

  int outstanding(size_t replica) const;
  bool up(size_t replica) const;

 private:
  struct Replica {
    int outstanding = 0;
    bool up = true;
    Clock::time_point recheck_at{};
  };
  mutable std::mutex mu_;
  std::vector<Replica> replicas_;
  const Clock::duration recheck_;
};

class PredictClient {
 public:
  // `urls`: http://HOST:PORT of each replica; `model`: the NAME of
  // /v1/models/NAME:predict.
  PredictClient(std::vector<std::string> urls, std::string model,
                ReplicaChooser::Clock::duration recheck = std::chrono::seconds(1));

  struct Answer {
    std::vector<double> predictions;
    uint64_t model_version = 0;
    int attempts = 0;
  };
  // Scores `lines` (input lines in the job's format) within `deadline`.
  absl::StatusOr<Answer> Predict(const std::vector<std::string>& lines, std::chrono::milliseconds deadline);

 private:
  struct Target {
    std::string host;
    int port = 0;
  };
  std::vector<Target> targets_;
  const std::string path_;
  std::vector<std::string> urls_;
  ReplicaChooser chooser_;
};

}  // namespace sparta

#endif  // SPARTA_CTL_PREDICT_CLIENT_H_
