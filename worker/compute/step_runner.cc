#include "worker/compute/step_runner.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "sparta/sdk/logistic.h"

namespace sparta {

double SummedLogLoss(std::span<const float> probs, std::span<const float> labels) {
  double loss = 0;
  for (size_t i = 0; i < probs.size(); ++i) loss += LogLoss(probs[i], labels[i]);
  return loss;
}

absl::Status GuardModelCall(uint64_t step, const std::function<void()>& call) {
  try {
    call();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("the model threw during step ", step, ": ", e.what()));
  }
}

}  // namespace sparta
