// The PREDICT message of sparta-serve's ZeroMQ endpoint, both ways, in one
// place: what a client sends (PredictRequest), what the endpoint reads of
// it (PredictRecordsOf), and a client's wait for the RESPONSE that answers
// it (AwaitResponse). The endpoint is worker/serving/zmq_predict_endpoint.h;
// the clients are ctl/predict_client.h and tests/bench/serve_bench.cc (the
// Python client, worker/python/sparta/predict.py, writes the same bytes).
//
//   PREDICT   header: model, deadline_ms (0: serving.deadline), num_keys =
//             n, seq; one frame: the n input lines, each ended by '\n'.
//   RESPONSE  status and error; when OK, model_version and one frame of n
//             FP32 predictions (dim 1); seq echoes the request's.
//
// Functions only; thread-safe.
#ifndef SPARTA_COMMON_PREDICT_MESSAGE_H_
#define SPARTA_COMMON_PREDICT_MESSAGE_H_

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "common/message.h"

namespace sparta {

// A PREDICT of `lines` (input lines without their newlines) for `model`:
// its header (seq `seq`, deadline `deadline_ms`, 0 for the server's) and
// its one frame.
struct PredictRequest {
  pb::Header header;
  std::string frame;
};
PredictRequest MakePredictRequest(std::string_view model, std::span<const std::string> lines, double deadline_ms,
                                  uint64_t seq);

// The input lines a PREDICT carries, as views into its frame; an error if
// they are not `num_keys` lines each ended by '\n'.
absl::StatusOr<std::vector<std::string_view>> PredictRecordsOf(const Message& request);

// Receives on `socket` (a DEALER) until the RESPONSE whose seq is `seq`
// (others, late answers to earlier requests, are dropped); DeadlineExceeded
// at `until`.
absl::StatusOr<Message> AwaitResponse(zmq::socket_t& socket, uint64_t seq,
                                      std::chrono::steady_clock::time_point until);

}  // namespace sparta

#endif  // SPARTA_COMMON_PREDICT_MESSAGE_H_
