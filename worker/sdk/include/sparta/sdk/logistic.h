// The logistic link and its loss, shared by every binary-click model.
// Pure functions; thread-safe.
#ifndef SPARTA_SDK_LOGISTIC_H_
#define SPARTA_SDK_LOGISTIC_H_

#include <algorithm>
#include <cmath>

namespace sparta {

inline float Sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

// -[y log p + (1-y) log(1-p)], with p clipped away from 0 and 1 so that one
// confident mistake cannot make the mean infinite.
inline double LogLoss(double p, double y) {
  p = std::clamp(p, 1e-7, 1 - 1e-7);
  return -(y * std::log(p) + (1 - y) * std::log(1 - p));
}

}  // namespace sparta

#endif  // SPARTA_SDK_LOGISTIC_H_
