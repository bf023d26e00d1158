#include "worker/compute/stream_plan.h"

namespace sparta {

std::vector<StreamOp> SubmitOps(uint64_t step, int slots) {
  const int s = SlotOf(step, slots);
  using K = StreamOpKind;
  using E = StreamEvent;
  return {
      {Lane::kHost, K::kStage, E::kNone, s},
      // The slot's previous kernels must have read their input.
      {Lane::kCopyIn, K::kWait, E::kComputed, s},
      {Lane::kCopyIn, K::kCopyIn, E::kNone, s},
      {Lane::kCopyIn, K::kRecord, E::kStaged, s},
      {Lane::kCompute, K::kWait, E::kStaged, s},
      // The slot's previous output must be out before the kernels overwrite it.
      {Lane::kCompute, K::kWait, E::kDrained, s},
      {Lane::kCompute, K::kKernels, E::kNone, s},
      {Lane::kCompute, K::kRecord, E::kComputed, s},
      {Lane::kCopyOut, K::kWait, E::kComputed, s},
      {Lane::kCopyOut, K::kCopyOut, E::kNone, s},
      {Lane::kCopyOut, K::kRecord, E::kDrained, s},
  };
}

std::vector<StreamOp> CollectOps(uint64_t step, int slots) {
  return {{Lane::kHost, StreamOpKind::kSync, StreamEvent::kDrained, SlotOf(step, slots)}};
}

}  // namespace sparta
