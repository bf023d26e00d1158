// PredictFile: `sparta-ctl predict`: every line of an input (a file, or
// stdin) scored by sparta-serve replicas through a PredictClient, `batch`
// lines a request and `parallel` requests in flight, the predictions
// printed one per line in input order (%.9g, as eval.predictions_out).
// Stateless function; thread-safe.
#ifndef SPARTA_CTL_PREDICT_FILE_H_
#define SPARTA_CTL_PREDICT_FILE_H_

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sparta {

struct PredictFileOptions {
  std::vector<std::string> urls;  // the replicas, http://HOST:PORT or tcp://HOST:PORT
  std::string key_file;           // cluster.auth: curve (ZeroMQ replicas)
  std::string model;
  std::string input;  // a file; "-": stdin
  int batch = 100;
  int parallel = 4;
  std::chrono::milliseconds deadline{1000};  // per request
};

// Fails (naming the lines) if any request failed after its retry.
absl::Status PredictFile(const PredictFileOptions& options, std::FILE* out);

}  // namespace sparta

#endif  // SPARTA_CTL_PREDICT_FILE_H_
