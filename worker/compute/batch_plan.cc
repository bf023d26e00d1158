#include "worker/compute/batch_plan.h"

#include <algorithm>
#include <numeric>

namespace sparta {

void BatchPlan::Build(const Batch& batch) {
  const uint32_t nnz = static_cast<uint32_t>(batch.slots.size());
  feature_rows.resize(nnz);
  bag_features.resize(nnz);
  bag_offsets.assign(1, 0);
  bag_rows.clear();
  bag_fields.clear();
  for (uint32_t i = 0; i < batch.size; ++i) {
    const uint32_t begin = batch.offsets[i], end = batch.offsets[i + 1];
    std::fill(feature_rows.begin() + begin, feature_rows.begin() + end, i);
    uint32_t* order = bag_features.data() + begin;
    std::iota(order, order + (end - begin), begin);
    // Readers usually emit fields in order (criteo does); sort only if not.
    auto by_field = [&](uint32_t a, uint32_t b) { return batch.fields[a] < batch.fields[b]; };
    if (!std::is_sorted(order, order + (end - begin), by_field)) std::stable_sort(order, order + (end - begin), by_field);
    for (uint32_t p = begin; p < end; ++p) {
      const uint32_t field = batch.fields[order[p - begin]];
      if (p == begin || field != bag_fields.back()) {
        if (p != begin) bag_offsets.push_back(p);
        bag_rows.push_back(i);
        bag_fields.push_back(field);
      }
    }
    if (end > begin) bag_offsets.push_back(end);
  }

  // Counting sort of the features by key slot, stable in feature order.
  const uint32_t keys = static_cast<uint32_t>(batch.unique_keys.size());
  key_offsets.assign(keys + 1, 0);
  for (uint32_t f = 0; f < nnz; ++f) ++key_offsets[batch.slots[f] + 1];
  std::partial_sum(key_offsets.begin(), key_offsets.end(), key_offsets.begin());
  key_features.resize(nnz);
  // key_offsets[s] serves as the insertion cursor of slot s, then is restored.
  for (uint32_t f = 0; f < nnz; ++f) key_features[key_offsets[batch.slots[f]]++] = f;
  for (uint32_t s = keys; s > 0; --s) key_offsets[s] = key_offsets[s - 1];
  key_offsets[0] = 0;
}

BatchView HostBatchView(const Batch& batch, const BatchPlan& plan) {
  BatchView view;
  view.size = batch.size;
  view.nnz = static_cast<uint32_t>(batch.slots.size());
  view.num_unique = static_cast<uint32_t>(batch.unique_keys.size());
  view.num_dense = batch.num_dense;
  view.labels = batch.labels.data();
  view.offsets = batch.offsets.data();
  view.slots = batch.slots.data();
  view.values = batch.values.data();
  view.fields = batch.fields.data();
  view.dense = batch.dense.data();
  if (!plan.bag_rows.empty() || !plan.key_offsets.empty()) {
    view.num_bags = static_cast<uint32_t>(plan.bag_rows.size());
    view.feature_rows = plan.feature_rows.data();
    view.bag_offsets = plan.bag_offsets.data();
    view.bag_features = plan.bag_features.data();
    view.bag_rows = plan.bag_rows.data();
    view.bag_fields = plan.bag_fields.data();
    view.key_offsets = plan.key_offsets.data();
    view.key_features = plan.key_features.data();
  }
  return view;
}

}  // namespace sparta
