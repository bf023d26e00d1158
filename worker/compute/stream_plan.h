// StreamPlan: the order in which a GPU step runner issues a step's copies,
// kernels and synchronization on its lanes (the host and three CUDA
// streams), as data, so that the schedule can be checked on any machine
// (tests/unit/compute_plan_test.cc) and the CUDA runner only executes it.
//
// A step uses slot `step % slots` (pinned host and device buffers for its
// input and output). With two slots, step i's kernels run while step i+1's
// input is copied in and step i-1's gradients are copied out and pushed:
//
//   copy-in  : [in i] [in i+1]
//   compute  :        [kernels i] [kernels i+1]
//   copy-out :  [out i-1]         [out i]
//
// Events order what must be ordered: a slot's input is copied in before its
// kernels read it and only after the kernels of the slot's previous step;
// its output is copied out after its kernels and before the slot's next
// kernels overwrite it; the host reuses a slot only after collecting it.
//
// Pure functions; thread-safe.
#ifndef SPARTA_WORKER_COMPUTE_STREAM_PLAN_H_
#define SPARTA_WORKER_COMPUTE_STREAM_PLAN_H_

#include <cstdint>
#include <vector>

namespace sparta {

enum class Lane : uint8_t { kHost, kCopyIn, kCompute, kCopyOut };
enum class StreamOpKind : uint8_t {
  kStage,    // host: write the step's input into the slot's pinned buffer
  kCopyIn,   // host to device, the whole input in one copy
  kKernels,  // the model's forward and backward passes
  kCopyOut,  // device to host: gradients and probabilities in one copy
  kWait,     // the lane waits for the latest record of `event` on `slot`
  kRecord,   // the lane records `event` on `slot`
  kSync,     // the host waits for `event` on `slot`
};
enum class StreamEvent : uint8_t { kNone, kStaged, kComputed, kDrained };

struct StreamOp {
  Lane lane;
  StreamOpKind kind;
  StreamEvent event;
  int slot;
};

inline int SlotOf(uint64_t step, int slots) { return static_cast<int>(step % static_cast<uint64_t>(slots)); }

// The ops that submit `step`, in issue order.
std::vector<StreamOp> SubmitOps(uint64_t step, int slots);
// The ops that collect `step` (after which its output may be read).
std::vector<StreamOp> CollectOps(uint64_t step, int slots);

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_STREAM_PLAN_H_
