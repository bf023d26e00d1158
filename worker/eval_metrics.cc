#include "worker/eval_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "sparta/sdk/logistic.h"

namespace sparta {

double Auc(std::span<const float> scores, std::span<const float> labels) {
  const size_t n = scores.size();
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // A NaN score (a diverged model) ranks lowest; a comparator that is not a
  // strict weak order would make std::sort run off the end.
  auto key = [&](uint32_t i) { return std::isnan(scores[i]) ? -INFINITY : scores[i]; };
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return key(a) < key(b); });
  double positives = 0, rank_sum = 0;
  // Walk groups of equal scores; every member of a group gets its mean rank.
  for (size_t i = 0; i < n;) {
    size_t j = i;
    double group_positives = 0;
    while (j < n && key(order[j]) == key(order[i])) group_positives += labels[order[j++]] > 0.5f;
    const double mean_rank = (i + 1 + j) / 2.0;  // ranks i+1 .. j
    rank_sum += group_positives * mean_rank;
    positives += group_positives;
    i = j;
  }
  const double negatives = n - positives;
  if (positives == 0 || negatives == 0) return NAN;
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

double MeanLogLoss(std::span<const float> probs, std::span<const float> labels) {
  double sum = 0;
  for (size_t i = 0; i < probs.size(); ++i) sum += LogLoss(probs[i], labels[i]);
  return probs.empty() ? NAN : sum / probs.size();
}

absl::Status WritePredictions(const std::string& path, std::span<const float> probs) {
  std::ofstream out(path);
  if (!out) return absl::UnavailableError(absl::StrCat("eval.predictions_out: cannot write '", path, "'"));
  char line[32];
  for (float p : probs) {
    const int n = std::snprintf(line, sizeof(line), "%.9g\n", p);
    out.write(line, n);
  }
  if (!out.good()) return absl::UnavailableError(absl::StrCat("eval.predictions_out: write to '", path, "' failed"));
  spdlog::info("wrote {} predictions to {}", probs.size(), path);
  return absl::OkStatus();
}

}  // namespace sparta
