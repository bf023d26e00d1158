// PredictClient: sends prediction requests to a set of sparta-serve
// replicas (front-ends serving the same model) and spreads them by least
// outstanding requests: the replica with the fewest requests in flight
// gets the next one, so a slow replica gets fewer.
//
// A request that fails (no connection, a 5xx, no answer in time) is tried
// once more on another replica, within what is left of its deadline; a 4xx
// is the request's own fault and is not retried. Over ZeroMQ, where a
// replica that dies under a request is not seen, the first try gets half
// the deadline. A replica that failed gets
// no more requests until its /healthz answers again (asked at most once per
// `recheck`, by the request that would otherwise have no replica).
//
// A replica is reached over HTTP (http://HOST:PORT, sparta-serve's
// serving.port, JSON) or over ZeroMQ (tcp://HOST:PORT, its serving.zmq_port,
// Sparta's wire format: no JSON either way, for the lowest latency; health
// checked by a HEARTBEAT). ZeroMQ sockets are kept, one per request in
// flight, and dropped after a failure (a late answer never meets the next
// request).
//
// ReplicaChooser is that choice without sockets; PredictClient adds the
// transports. Both thread-safe: one client serves many sending threads.
#ifndef SPARTA_CTL_PREDICT_CLIENT_H_
#define SPARTA_CTL_PREDICT_CLIENT_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <memory>

#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "common/config.h"

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
  size_t next_start_ = 0;  // where the next Pick() starts its scan
  const Clock::duration recheck_;
};

// The cluster settings a client needs for the ZeroMQ endpoints of a job with
// cluster.auth: curve, from its key file ("": none, no auth).
absl::StatusOr<ClusterConfig> ClientClusterConfig(const std::string& key_file);

class PredictClient {
 public:
  // `urls`: http://HOST:PORT or tcp://HOST:PORT of each replica; `model`:
  // the NAME of /v1/models/NAME:predict; `cluster`: its auth, for the
  // ZeroMQ endpoints of a job with cluster.auth: curve.
  PredictClient(std::vector<std::string> urls, std::string model,
                ReplicaChooser::Clock::duration recheck = std::chrono::seconds(1), ClusterConfig cluster = {});
  ~PredictClient();

  struct Answer {
    std::vector<double> predictions;
    uint64_t model_version = 0;
    int attempts = 0;
  };
  // Why `url` is not a replica's address (http://HOST:PORT, tcp://HOST:PORT;
  // PORT defaults to 80 and 8502); OK if it is one.
  static absl::Status CheckUrl(const std::string& url);

  // Scores `lines` (input lines in the job's format) within `deadline`.
  absl::StatusOr<Answer> Predict(const std::vector<std::string>& lines, std::chrono::milliseconds deadline);

 private:
  struct Target {
    bool zmq = false;
    std::string host;
    int port = 0;
    std::string endpoint;  // zmq: tcp://HOST:PORT
  };
  static absl::StatusOr<Target> ParseTarget(const std::string& url);
  // One attempt on one replica, `left` its time.
  struct Attempt {
    enum Outcome { kAnswered, kBadRequest, kReplicaFailed } outcome = kReplicaFailed;
    std::string error;
    bool health_failed = false;  // its health check, asked first, failed
    Answer answer;
  };
  Attempt CallHttp(size_t r, const std::string& body, bool check_health, std::chrono::microseconds left);
  Attempt CallZmq(size_t r, const std::vector<std::string>& lines, bool check_health, std::chrono::microseconds left);
  // A connected DEALER socket for replica `r`: an idle one, or a new one.
  std::unique_ptr<zmq::socket_t> TakeSocket(size_t r);
  void GiveBack(size_t r, std::unique_ptr<zmq::socket_t> socket);

  std::vector<Target> targets_;
  const std::string model_;
  const std::string path_;
  std::vector<std::string> urls_;
  ReplicaChooser chooser_;
  const ClusterConfig cluster_;
  zmq::context_t context_{1};
  std::mutex sockets_mu_;
  std::vector<std::vector<std::unique_ptr<zmq::socket_t>>> idle_sockets_;  // per replica
  std::atomic<uint64_t> seq_{0};
};

}  // namespace sparta

#endif  // SPARTA_CTL_PREDICT_CLIENT_H_
