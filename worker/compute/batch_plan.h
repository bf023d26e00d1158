// BatchPlan: the host-side plans of one batch that a BatchView carries (see
// sparta/sdk/backend.h): each feature's example, the features of each
// (example, field) bag, and the features of each unique key. A GPU backend
// pools bags and reduces keys with one thread group per segment, so that
// the gradients of a repeated key are summed without atomics and in a
// fixed order; building the plans here keeps sorting off the device and
// costs O(features + keys) per batch.
//
// Not thread-safe. Build() reuses the vectors' capacity from batch to batch.
#ifndef SPARTA_WORKER_COMPUTE_BATCH_PLAN_H_
#define SPARTA_WORKER_COMPUTE_BATCH_PLAN_H_

#include <cstdint>
#include <vector>

#include "sparta/sdk/backend.h"
#include "sparta/sdk/example.h"

namespace sparta {

struct BatchPlan {
  std::vector<uint32_t> feature_rows;
  std::vector<uint32_t> bag_offsets, bag_features, bag_rows, bag_fields;
  std::vector<uint32_t> key_offsets, key_features;

  void Build(const Batch& batch);
};

// A view of a host batch and its plan (which may be empty: the CPU backend
// does not read the plans). Both must outlive the view.
BatchView HostBatchView(const Batch& batch, const BatchPlan& plan);

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_BATCH_PLAN_H_
