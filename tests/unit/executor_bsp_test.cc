// ShardExecutor under worker.consistency bsp, with its own thread and no
// sockets: the pushes of one step are summed per key and applied in one
// optimizer update when a request of a later step arrives (so 2 workers
// train as 1 worker with twice the batch), a pull of the step itself does
// not see a partial sum, and a row is updated once per step, not once per
// push (with Adagrad the two differ).
#include <cmath>

#include <catch2/catch.hpp>

#include "server/initializer.h"
#include "tests/unit/executor_harness.h"

namespace sparta::executor_bsp_test {
namespace {

constexpr uint32_t kDim = 4;

struct Fixture : ExecutorHarness {
  Fixture() : ExecutorHarness(AdagradTable("t", kDim, 0.5f), ShardExecutor::Options{.sum_steps = true}) {}

  std::vector<float> Pull(uint64_t clock, uint64_t key) { return ExecutorHarness::Pull(clock, {key}); }
  // What the table's row of `key` is after applying `grad_steps` in turn.
  std::vector<float> Reference(uint64_t key, const std::vector<std::vector<float>>& grad_steps) const {
    std::vector<float> row(kDim + table->optimizer->StateFloats(kDim));
    InitializeWeights(spec.initializer(), key, row.data(), kDim);
    table->optimizer->InitState(row.data(), kDim);
    for (const auto& g : grad_steps) table->optimizer->Apply(row.data(), g.data(), kDim);
    row.resize(kDim);
    return row;
  }
};

TEST_CASE("a step's pushes are summed and applied once, when the next step begins", "[bsp]") {
  Fixture f;
  const uint64_t key = 42;
  const std::vector<float> g1 = {0.5f, -1.0f, 2.0f, 0.25f}, g2 = {1.5f, 0.5f, -3.0f, 0.25f};
  std::vector<float> sum(kDim);
  for (uint32_t i = 0; i < kDim; ++i) sum[i] = g1[i] + g2[i];
  const std::vector<float> before = f.Reference(key, {});
  // Step 1: two workers push the same key.
  auto a = f.Send(pb::PUSH, 1, {key}, g1);
  auto b = f.Send(pb::PUSH, 1, {key}, g2);
  f.WaitFor(a);
  f.WaitFor(b);
  // Within step 1 the row is still as it was: no partial step is visible.
  CHECK(f.Pull(1, key) == before);
  // A request of step 2 applies step 1's sum first, in one update.
  const std::vector<float> after = f.Pull(2, key);
  CHECK(after == f.Reference(key, {sum}));
  // Two updates in turn (what asp would do) give another row with Adagrad.
  CHECK(after != f.Reference(key, {g1, g2}));
  // Step 2's push, then a request without a step (an evaluation pull), applies it.
  auto c = f.Send(pb::PUSH, 2, {key}, g1);
  f.WaitFor(c);
  CHECK(f.Pull(0, key) == f.Reference(key, {sum, g1}));
}

TEST_CASE("keys pushed in one step by one worker only are updated by that worker's gradient", "[bsp]") {
  Fixture f;
  const std::vector<float> g = {1, 2, 3, 4}, h = {-1, -1, -1, -1};
  auto a = f.Send(pb::PUSH, 1, {7, 8}, {1, 2, 3, 4, -1, -1, -1, -1});
  auto b = f.Send(pb::PUSH, 1, {8}, {1, 2, 3, 4});
  f.WaitFor(a);
  f.WaitFor(b);
  CHECK(f.Pull(2, 7) == f.Reference(7, {g}));
  std::vector<float> both(kDim);
  for (uint32_t i = 0; i < kDim; ++i) both[i] = g[i] + h[i];
  CHECK(f.Pull(2, 8) == f.Reference(8, {both}));
}

}  // namespace
}  // namespace sparta::executor_bsp_test
