#include "ctl/predict_file.h"

#include <atomic>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "ctl/predict_client.h"

namespace sparta {

absl::Status PredictFile(const PredictFileOptions& options, std::FILE* out) {
  std::vector<std::string> lines;
  {
    std::ifstream file;
    if (options.input != "-") {
      file.open(options.input);
      if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", options.input));
    }
    std::istream& in = options.input == "-" ? std::cin : file;
    for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
  }
  auto cluster = ClientClusterConfig(options.key_file);
  if (!cluster.ok()) return cluster.status();
  PredictClient client(options.urls, options.model, std::chrono::seconds(1), *std::move(cluster));
  const size_t batch = static_cast<size_t>(std::max(1, options.batch));
  const size_t requests = (lines.size() + batch - 1) / batch;
  std::vector<double> predictions(lines.size());
  std::atomic<size_t> next{0};
  std::mutex mu;
  absl::Status first_error;
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, options.parallel); ++t) {
    threads.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < requests;) {
        const size_t begin = i * batch, end = std::min(lines.size(), begin + batch);
        std::vector<std::string> part(lines.begin() + begin, lines.begin() + end);
        auto answer = client.Predict(part, options.deadline);
        if (!answer.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.ok()) {
            first_error = absl::Status(answer.status().code(), absl::StrCat("lines ", begin + 1, "-", end, ": ",
                                                                            answer.status().message()));
          }
          continue;
        }
        std::copy(answer->predictions.begin(), answer->predictions.end(), predictions.begin() + begin);
      }
    });
  }
  for (auto& t : threads) t.join();
  if (!first_error.ok()) return first_error;
  for (double p : predictions) std::fprintf(out, "%.9g\n", p);
  return absl::OkStatus();
}

}  // namespace sparta
