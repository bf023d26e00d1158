// Evaluation metrics for binary click prediction, and the predictions file
// (eval.predictions_out). Free functions; thread-safe.
#ifndef SPARTA_WORKER_EVAL_METRICS_H_
#define SPARTA_WORKER_EVAL_METRICS_H_

#include <span>
#include <string>

#include "absl/status/status.h"

namespace sparta {

// Area under the ROC curve: the probability that a random positive scores
// above a random negative, ties counting one half (the Mann-Whitney U
// statistic, exact, O(n log n)). NaN if either class is absent.
double Auc(std::span<const float> scores, std::span<const float> labels);

// Mean logloss of probabilities against 0/1 labels.
double MeanLogLoss(std::span<const float> probs, std::span<const float> labels);

// Writes one probability per line ("%.9g": a float read back is the same
// float) to `path`, for eval.predictions_out.
absl::Status WritePredictions(const std::string& path, std::span<const float> probs);

}  // namespace sparta

#endif  // SPARTA_WORKER_EVAL_METRICS_H_
