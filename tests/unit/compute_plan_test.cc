// The host-side logic of the GPU path, tested on every machine: the batch
// plans a CUDA backend pools and reduces with, the staging layout of a
// step's copies, and the stream schedule of the CUDA runner.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "worker/compute/batch_plan.h"
#include "worker/compute/cpu/cpu_backend.h"
#include "worker/compute/staging_layout.h"
#include "worker/compute/stream_plan.h"
#include "worker/data/batch.h"

namespace sparta::compute_plan_test {
namespace {

// Examples whose features come in shuffled field order, with repeated keys
// and repeated fields within an example.
Batch ShuffledBatch(std::mt19937& rng, int examples = 40, int keys = 25, int fields = 5) {
  BatchBuilder builder;
  std::uniform_int_distribution<uint64_t> key(1, keys);
  std::uniform_int_distribution<uint32_t> field(0, fields);  // `fields` itself: beyond the schema
  std::uniform_int_distribution<int> count(0, 9);
  std::uniform_real_distribution<float> value(0.5f, 1.5f);
  for (int i = 0; i < examples; ++i) {
    Example ex;
    ex.label = static_cast<float>(i % 2);
    const int n = count(rng);
    for (int f = 0; f < n; ++f) ex.features.push_back({key(rng), value(rng), field(rng)});
    builder.Add(ex);
  }
  return std::move(*builder.Finish(0));
}

TEST_CASE("batch plan: bags group each example's features by field, every feature once") {
  std::mt19937 rng(3);
  const Batch batch = ShuffledBatch(rng);
  BatchPlan plan;
  plan.Build(batch);
  const size_t nnz = batch.slots.size();
  REQUIRE(plan.bag_offsets.size() == plan.bag_rows.size() + 1);
  REQUIRE(plan.bag_offsets.back() == nnz);
  std::vector<uint32_t> seen(plan.bag_features);
  std::sort(seen.begin(), seen.end());
  for (uint32_t f = 0; f < nnz; ++f) REQUIRE(seen[f] == f);
  std::set<std::pair<uint32_t, uint32_t>> bags;
  for (size_t b = 0; b < plan.bag_rows.size(); ++b) {
    REQUIRE(plan.bag_offsets[b] < plan.bag_offsets[b + 1]);  // no empty bag
    REQUIRE(bags.insert({plan.bag_rows[b], plan.bag_fields[b]}).second);  // one bag per (example, field)
    for (uint32_t p = plan.bag_offsets[b]; p < plan.bag_offsets[b + 1]; ++p) {
      const uint32_t f = plan.bag_features[p];
      REQUIRE(plan.feature_rows[f] == plan.bag_rows[b]);
      REQUIRE(batch.fields[f] == plan.bag_fields[b]);
      REQUIRE(f >= batch.offsets[plan.bag_rows[b]]);
      REQUIRE(f < batch.offsets[plan.bag_rows[b] + 1]);
    }
  }
}

TEST_CASE("batch plan: each key's segment lists exactly the features of that key, in feature order") {
  std::mt19937 rng(5);
  const Batch batch = ShuffledBatch(rng);
  BatchPlan plan;
  plan.Build(batch);
  REQUIRE(plan.key_offsets.size() == batch.unique_keys.size() + 1);
  REQUIRE(plan.key_offsets.back() == batch.slots.size());
  for (uint32_t key = 0; key < batch.unique_keys.size(); ++key) {
    std::vector<uint32_t> expected;
    for (uint32_t f = 0; f < batch.slots.size(); ++f) {
      if (batch.slots[f] == key) expected.push_back(f);
    }
    const std::vector<uint32_t> got(plan.key_features.begin() + plan.key_offsets[key],
                                    plan.key_features.begin() + plan.key_offsets[key + 1]);
    REQUIRE(got == expected);
  }
}

// What the CUDA kernels compute from the plans, written as plain loops: one
// sum per (bag, column) and per (key, column). It must match the CPU
// backend, which does not use the plans.
void PoolByBags(const BatchView& b, const PoolSpec& spec, const float* rows, float* out, uint32_t stride) {
  for (uint32_t i = 0; i < b.size; ++i) std::fill(out + size_t{i} * stride, out + size_t{i} * stride + spec.num_fields * spec.width, 0.0f);
  for (uint32_t bag = 0; bag < b.num_bags; ++bag) {
    if (b.bag_fields[bag] >= spec.num_fields) continue;
    for (uint32_t c = 0; c < spec.width; ++c) {
      float sum = 0;
      for (uint32_t p = b.bag_offsets[bag]; p < b.bag_offsets[bag + 1]; ++p) {
        const uint32_t f = b.bag_features[p];
        const float v = b.values[f] * rows[size_t{b.slots[f]} * spec.row_dim + spec.column + c];
        sum += spec.square ? v * v : v;
      }
      out[size_t{b.bag_rows[bag]} * stride + b.bag_fields[bag] * spec.width + c] = sum;
    }
  }
}

void PoolBackwardByKeys(const BatchView& b, const PoolSpec& spec, const float* rows, const float* dout,
                        uint32_t stride, float* grads) {
  for (uint32_t key = 0; key < b.num_unique; ++key) {
    for (uint32_t c = 0; c < spec.width; ++c) {
      const size_t at = size_t{key} * spec.row_dim + spec.column + c;
      float sum = 0;
      for (uint32_t p = b.key_offsets[key]; p < b.key_offsets[key + 1]; ++p) {
        const uint32_t f = b.key_features[p];
        const uint32_t pool = spec.num_fields > 0 ? b.fields[f] : 0;
        if (spec.num_fields > 0 && pool >= spec.num_fields) continue;
        const float x = b.values[f];
        const float d = dout[size_t{b.feature_rows[f]} * stride + pool * spec.width + c];
        sum += spec.square ? 2 * x * x * rows[at] * d : x * d;
      }
      grads[at] += sum;
    }
  }
}

TEST_CASE("pooling by the plans' segments equals the CPU backend, forward and backward") {
  std::mt19937 rng(9);
  const Batch batch = ShuffledBatch(rng);
  BatchPlan plan;
  plan.Build(batch);
  const BatchView view = HostBatchView(batch, plan);
  const uint32_t dim = 4;
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> rows(batch.unique_keys.size() * dim);
  for (float& x : rows) x = normal(rng);
  CpuBackend cpu;
  for (const PoolSpec spec : {PoolSpec{.row_dim = dim, .column = 1, .width = 3, .num_fields = 5},
                              PoolSpec{.row_dim = dim, .column = 1, .width = 3, .num_fields = 5, .square = true},
                              PoolSpec{.row_dim = dim, .column = 0, .width = 1, .num_fields = 2}}) {
    const uint32_t stride = spec.num_fields * spec.width + 2;  // a wider row, as dnn's concat is
    std::vector<float> expected(batch.size * stride, 7.0f), got(batch.size * stride, 7.0f);
    cpu.Pool(view, spec, rows.data(), expected.data(), stride);
    PoolByBags(view, spec, rows.data(), got.data(), stride);
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(expected[i]).margin(1e-5));

    std::vector<float> dout(batch.size * stride);
    for (float& x : dout) x = normal(rng);
    std::vector<float> grad_cpu(rows.size(), 0.5f), grad_plan(rows.size(), 0.5f);
    cpu.PoolBackward(view, spec, rows.data(), dout.data(), stride, grad_cpu.data());
    PoolBackwardByKeys(view, spec, rows.data(), dout.data(), stride, grad_plan.data());
    for (size_t i = 0; i < rows.size(); ++i) REQUIRE(grad_plan[i] == Approx(grad_cpu[i]).margin(1e-4));
  }
}

TEST_CASE("staging layout: arrays are aligned, in order and disjoint") {
  StagingLayout layout;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (size_t bytes : {4u, 0u, 1000u, 256u, 257u, 3u}) ranges.push_back({layout.Add(bytes), bytes});
  for (size_t i = 0; i < ranges.size(); ++i) {
    REQUIRE(ranges[i].first % StagingLayout::kAlignment == 0);
    if (i > 0) REQUIRE(ranges[i].first >= ranges[i - 1].first + ranges[i - 1].second);
  }
  REQUIRE(layout.size() >= ranges.back().first + ranges.back().second);
}

// The stream schedule as a dependency graph: ops in issue order; an op
// depends on its lane's previous op, a wait or sync on the latest record of
// its event and slot issued before it, and every op on the host ops issued
// before it (nothing is issued while the host blocks).
struct Schedule {
  std::vector<StreamOp> ops;
  std::vector<uint64_t> step_of;
  std::vector<std::vector<size_t>> deps;
  std::map<std::pair<uint64_t, StreamOpKind>, size_t> index;  // (step, kind) -> op, for the work ops

  void Issue(uint64_t step, const std::vector<StreamOp>& more, int slots) {
    for (const StreamOp& op : more) {
      const size_t id = ops.size();
      std::vector<size_t> d;
      for (size_t j = id; j-- > 0;) {
        if (ops[j].lane == op.lane) {
          d.push_back(j);
          break;
        }
      }
      for (size_t j = id; j-- > 0;) {
        if (ops[j].lane == Lane::kHost) {
          d.push_back(j);
          break;
        }
      }
      if (op.kind == StreamOpKind::kWait || op.kind == StreamOpKind::kSync) {
        for (size_t j = id; j-- > 0;) {
          if (ops[j].kind == StreamOpKind::kRecord && ops[j].event == op.event && ops[j].slot == op.slot) {
            d.push_back(j);
            break;
          }
        }
      }
      ops.push_back(op);
      step_of.push_back(step);
      deps.push_back(d);
      if (op.kind != StreamOpKind::kWait && op.kind != StreamOpKind::kRecord) index[{step, op.kind}] = id;
    }
  }
  bool Before(size_t a, size_t b) const {  // a must finish before b starts
    std::vector<bool> seen(ops.size());
    std::vector<size_t> stack{b};
    while (!stack.empty()) {
      const size_t n = stack.back();
      stack.pop_back();
      for (size_t d : deps[n]) {
        if (d == a) return true;
        if (!seen[d]) seen[d] = true, stack.push_back(d);
      }
    }
    return false;
  }
  size_t At(uint64_t step, StreamOpKind kind) const { return index.at({step, kind}); }
};

TEST_CASE("stream schedule: ordered where it must be, overlapped where it may be") {
  const int slots = 2;
  const uint64_t steps = 6;
  Schedule s;
  // The trainer's order with a runner of depth 2: submit i, then collect i-1.
  for (uint64_t i = 0; i < steps; ++i) {
    s.Issue(i, SubmitOps(i, slots), slots);
    if (i > 0) s.Issue(i - 1, CollectOps(i - 1, slots), slots);
  }
  s.Issue(steps - 1, CollectOps(steps - 1, slots), slots);
  using K = StreamOpKind;
  for (uint64_t i = 0; i < steps; ++i) {
    INFO("step " << i);
    // A step's own chain.
    REQUIRE(s.Before(s.At(i, K::kStage), s.At(i, K::kCopyIn)));
    REQUIRE(s.Before(s.At(i, K::kCopyIn), s.At(i, K::kKernels)));
    REQUIRE(s.Before(s.At(i, K::kKernels), s.At(i, K::kCopyOut)));
    REQUIRE(s.Before(s.At(i, K::kCopyOut), s.At(i, K::kSync)));
    if (i >= static_cast<uint64_t>(slots)) {
      // Reusing the slot of step i - slots: its input was read and its output copied out.
      const uint64_t old = i - slots;
      REQUIRE(s.Before(s.At(old, K::kSync), s.At(i, K::kStage)));
      REQUIRE(s.Before(s.At(old, K::kKernels), s.At(i, K::kCopyIn)));
      REQUIRE(s.Before(s.At(old, K::kCopyOut), s.At(i, K::kKernels)));
    }
    // The overlap: step i's kernels are ordered neither with step i+1's
    // copy-in nor with step i-1's copy-out.
    if (i + 1 < steps) {
      REQUIRE_FALSE(s.Before(s.At(i, K::kKernels), s.At(i + 1, K::kCopyIn)));
      REQUIRE_FALSE(s.Before(s.At(i + 1, K::kCopyIn), s.At(i, K::kKernels)));
    }
    if (i > 0) {
      REQUIRE_FALSE(s.Before(s.At(i, K::kKernels), s.At(i - 1, K::kCopyOut)));
      REQUIRE_FALSE(s.Before(s.At(i - 1, K::kCopyOut), s.At(i, K::kKernels)));
    }
  }
}

TEST_CASE("stream schedule: with one slot every step is serial") {
  Schedule s;
  for (uint64_t i = 0; i < 3; ++i) {
    s.Issue(i, SubmitOps(i, 1), 1);
    s.Issue(i, CollectOps(i, 1), 1);
  }
  using K = StreamOpKind;
  for (uint64_t i = 1; i < 3; ++i) {
    REQUIRE(s.Before(s.At(i - 1, K::kCopyOut), s.At(i, K::kCopyIn)));
  }
}

}  // namespace
}  // namespace sparta::compute_plan_test
