// PredictApi: what the serving front-end's requests mean, without sockets
// (the HTTP server in model_server.h and the ZeroMQ endpoint in
// zmq_predict_endpoint.h only move bytes to and from it). Over HTTP, in the
// style of TensorFlow Serving's REST API:
//
//   POST /v1/models/NAME:predict  {"instances": [LINE or OBJECT, ...], "deadline_ms": D}
//        -> 200 {"predictions": [P, ...], "model_version": V}
//   GET  /v1/models/NAME          -> the loaded version and its state
//   GET  /healthz                 -> 200 while the process runs
//   GET  /readyz                  -> 200 once a model version is loaded, else 503
//
// An instance is one input record in the job's format (a Criteo TSV line,
// a libsvm line, or what the reader plugin reads), parsed by the job's own
// reader; the label column is read and ignored. An object of named fields
// (instance_fields.h) is turned into that line first. A prediction is
// printed as `eval.predictions_out` prints it (%.9g), so the two compare as
// text. Over ZeroMQ, PredictRecords() takes the lines as they came and
// answers the float predictions themselves.
//
// Errors are JSON {"error": "..."} saying what is wrong: 400 for a body or
// an instance that does not parse (naming the instance), 404 for another
// model's name, 503 before a model is loaded, 504 when the deadline passed
// (over ZeroMQ: the absl::StatusCode of those, with the same message).
//
// Thread-safe: every connection thread calls it at once.
#ifndef SPARTA_WORKER_SERVING_PREDICT_API_H_
#define SPARTA_WORKER_SERVING_PREDICT_API_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
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

// The HTTP status of a request that failed with `status`: 400
// (InvalidArgument), 404 (NotFound), 503 (Unavailable), 504
// (DeadlineExceeded), else 500.
int HttpStatusOf(const absl::Status& status);

// What a predict request came to: the predictions (one per record, in
// order) and the version that computed them, or why there are none.
struct PredictOutcome {
  absl::Status status;
  std::vector<float> probs;
  uint64_t version = 0;
};

class PredictApi {
 public:
  using Clock = RequestBatcher::Clock;
  struct Options {
    std::string model_name;
    std::chrono::duration<double> default_deadline{1.0};
    // data.format, for instances given as objects of fields; "" with a
    // reader plugin (its instances must be lines).
    std::string data_format;
  };
  // `make_reader` makes the job's readers (one per concurrent parse);
  // `batcher` computes; `version` says which model version is loaded (0:
  // none yet). All must outlive the PredictApi.
  PredictApi(Options options, ReaderMaker make_reader, RequestBatcher* batcher, std::function<uint64_t()> version);

  const std::string& model_name() const { return options_.model_name; }
  // POST /v1/models/NAME:predict; blocks until answered.
  HttpReply Predict(std::string_view model_name, std::string_view body);
  // The path both endpoints share: `records` (input lines, without their
  // newlines) for model `model_name`, due within `deadline_ms` of
  // `arrived` (none: serving.deadline). Parses them and queues them for
  // the compute threads; `done` is called once, maybe before this returns,
  // else on a compute thread (it must not block).
  void PredictRecords(std::string_view model_name, std::span<const std::string_view> records,
                      std::optional<double> deadline_ms, Clock::time_point arrived,
                      std::function<void(PredictOutcome)> done);
  // Shutdown, before the batcher goes: once this returns, no call is
  // inside the batcher and none enters it again; requests still arriving
  // are answered Unavailable. (The endpoints may outlive the batcher by a
  // moment: the ZeroMQ one still sends the batcher's last answers.)
  void StopTaking();

  HttpReply ModelStatus(std::string_view model_name) const;
  HttpReply Health() const;
  HttpReply Ready() const;

  // Latencies and counts of predict requests, for /metrics.
  void WriteMetrics(MetricWriter& out) const;

 private:
  // A reader from the pool (made on first need), given back by the deleter.
  using PooledReader = std::unique_ptr<Reader, std::function<void(Reader*)>>;
  absl::StatusOr<PooledReader> TakeReader();
  // Counts a request's outcome (and the latency of an answered one).
  void Count(const PredictOutcome& outcome, Clock::time_point arrived);
  absl::Status UnknownModel(std::string_view model_name) const;

  const Options options_;
  const ReaderMaker make_reader_;
  RequestBatcher* const batcher_;
  const std::function<uint64_t()> version_;
  // Shared by each request while it enters the batcher; StopTaking() takes
  // it exclusively to close the door.
  std::shared_mutex taking_mu_;
  bool taking_ = true;  // guarded by taking_mu_
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Reader>> idle_readers_;
  LatencyHistogram latency_;  // of answered predict requests (200), arrival to reply
  std::atomic<uint64_t> answered_{0}, rejected_{0}, failed_{0}, predicted_{0};
};

}  // namespace sparta

#endif  // SPARTA_WORKER_SERVING_PREDICT_API_H_
