// sparta::client::PredictClient: predictions from sparta-serve replicas,
// for C++ programs (libsparta_client.so; CMake: find_package(Sparta) and
// link Sparta::client). The Python twin is worker/python/sparta/predict.py;
// `sparta-ctl predict` is this client over a file.
//
// A client holds a set of replicas (front-ends serving the same model) and
// spreads requests over them by least outstanding requests: the replica
// with the fewest requests in flight gets the next one. A request that fails
// (no connection, a 5xx, no answer in time) is tried once more on another
// replica within what is left of its deadline; a bad request (a line that
// does not parse, another model's name) is the request's own fault and is
// not retried. A replica that failed gets no more requests until its health
// check answers again (asked at most once per `recheck`).
//
// A replica is http://HOST:PORT (serving.port: HTTP/JSON) or tcp://HOST:PORT
// (serving.zmq_port: Sparta's ZeroMQ wire format, no JSON, for the lowest
// latency); they may be mixed. For the ZeroMQ endpoint of a job with
// cluster.auth: curve, give the cluster's key file.
//
// Thread-safe: one client serves many sending threads (each request in
// flight has its own connection). Only the C++ standard library appears in
// this header: the library's dependencies stay inside it.
#ifndef SPARTA_CLIENT_PREDICT_CLIENT_H_
#define SPARTA_CLIENT_PREDICT_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#define SPARTA_CLIENT_EXPORT __attribute__((visibility("default")))

namespace sparta::client {

// What became of a request.
enum class Code {
  kOk,
  kBadRequest,   // the request's fault (a 4xx): not retried
  kUnavailable,  // no replica answered within the deadline (after the retry)
  kBadAnswer,    // a replica answered with another number of predictions than lines
};

struct Result {
  Code code = Code::kOk;
  std::string message;              // why, when not kOk (each replica's error)
  std::vector<double> predictions;  // one per line, in order, when kOk
  uint64_t model_version = 0;       // the version that computed them
  int attempts = 0;                 // 1, or 2 after a retry

  bool ok() const { return code == Code::kOk; }
};

class SPARTA_CLIENT_EXPORT PredictClient {
 public:
  struct Options {
    // How long a replica that failed gets no requests before its health
    // is checked again.
    std::chrono::milliseconds recheck{1000};
    // The cluster key file (sparta-ctl keygen), for tcp:// replicas of a
    // job with cluster.auth: curve; "" for none.
    std::string key_file;
  };

  // A client of `urls` for model `model` (the NAME of
  // /v1/models/NAME:predict); nullptr with `*error` set if a URL is not
  // http://HOST:PORT or tcp://HOST:PORT (PORT defaults to 80 and 8502), or
  // the key file cannot be read.
  static std::unique_ptr<PredictClient> Open(const std::vector<std::string>& urls, const std::string& model,
                                             const Options& options, std::string* error);

  ~PredictClient();
  PredictClient(const PredictClient&) = delete;
  PredictClient& operator=(const PredictClient&) = delete;

  // Scores `lines` (input lines in the job's format: Criteo TSV, libsvm,
  // or the reader plugin's) within `deadline`; blocks until answered.
  Result Predict(const std::vector<std::string>& lines, std::chrono::milliseconds deadline);

 private:
  struct Impl;
  explicit PredictClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparta::client

#endif  // SPARTA_CLIENT_PREDICT_CLIENT_H_
