// PredictApi: what the serving front-end's HTTP routes mean, without
// sockets (the HTTP server in model_server.h only moves bytes to and from
// it), in the style of TensorFlow Serving's REST API:
//
//   POST /v1/models/NAME:predict  {"instances": [LINE, ...], "deadline_ms": D}
//        -> 200 {"predictions": [P, ...], "model_version": V}
//   GET  /v1/models/NAME          -> the loaded version and its state
//   GET  /healthz                 -> 200 while the process runs
//   GET  /readyz                  -> 200 once a model version is loaded, else 503
//
// An instance is one input record in the job's format (a Criteo TSV line,
// a libsvm line, or what the reader plugin reads), parsed by the job's own
// reader; the label column is read and ignored. A prediction is printed as
// `eval.predictions_out` prints it (%.9g), so the two compare as text.
//
// Errors are JSON {"error": "..."} saying what is wrong: 400 for a body or
// an instance that does not parse (naming the instance), 404 for another
// model's name, 503 before a model is loaded, 504 when the deadline passed.
//
// Thread-safe: every connection thread calls it at once.
#ifndef SPARTA_WORKER_SERVING_PREDICT_API_H_
#define SPARTA_WORKER_SERVING_PREDICT_API_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/latency_histogram.h"
#include "common/metrics.h"
#include "sparta/sdk/reader.h"
#include "worker/data/readers.h"
#include "worker/serving/request_batcher.h"

namespace sparta {

struct HttpReply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

// {"error": MESSAGE}, the body of every error answer.
std::string ErrorBody(std::string_view message);

class PredictApi {
 public:
  struct Options {
    std::string model_name;
    std::chrono::duration<double> default_deadline{1.0};
  };
  // `make_reader` makes the job's readers (one per concurrent parse);
  // `batcher` computes; `version` says which model version is loaded (0:
  // none yet). All must outlive the PredictApi.
  PredictApi(Options options, ReaderMaker make_reader, RequestBatcher* batcher, std::function<uint64_t()> version);

  const std::string& model_name() const { return options_.model_name; }
  HttpReply Predict(std::string_view model_name, std::string_view body);
  HttpReply ModelStatus(std::string_view model_name) const;
  HttpReply Health() const;
  HttpReply Ready() const;

  // Latencies and counts of predict requests, for /metrics.
  void WriteMetrics(MetricWriter& out) const;

 private:
  // A reader from the pool (made on first need), given back by the deleter.
  using PooledReader = std::unique_ptr<Reader, std::function<void(Reader*)>>;
  absl::StatusOr<PooledReader> TakeReader();
  HttpReply Error(int status, std::string_view message);
  HttpReply UnknownModel(std::string_view model_name) const;

  const Options options_;
  const ReaderMaker make_reader_;
  RequestBatcher* const batcher_;
  const std::function<uint64_t()> version_;
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Reader>> idle_readers_;
  LatencyHistogram latency_;  // of answered predict requests (200), arrival to reply
  std::atomic<uint64_t> answered_{0}, rejected_{0}, failed_{0}, predicted_{0};
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_PREDICT_API_H_
