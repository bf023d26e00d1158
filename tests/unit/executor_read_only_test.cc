// A serving cluster's executor (ShardExecutor::Options::read_only): a pull of
// a key without a row reads the row the key would start with, and creates
// none; a key with a row reads it as it is.
#include <catch2/catch.hpp>

#include "server/initializer.h"
#include "tests/unit/executor_harness.h"

namespace sparta::executor_read_only_test {
namespace {

constexpr uint32_t kDim = 4;

std::vector<float> InitialRow(const pb::TableSpec& spec, uint64_t key) {
  std::vector<float> row(kDim);
  InitializeWeights(spec.initializer(), key, row.data(), kDim);
  return row;
}

std::vector<float> RowOf(const Request& r, size_t i) {
  return std::vector<float>(r.values.begin() + static_cast<std::ptrdiff_t>(i * kDim),
                            r.values.begin() + static_cast<std::ptrdiff_t>((i + 1) * kDim));
}

TEST_CASE("a read-only executor reads unseen keys as their initial rows and creates none", "[read_only]") {
  ExecutorHarness training(AdagradTable("t", kDim, 0.1f), {});
  ExecutorHarness serving(AdagradTable("t", kDim, 0.1f), {.read_only = true});
  const std::vector<uint64_t> keys = {7, 11, 1u << 30};
  auto pulled = serving.Call(pb::PULL, 0, keys);
  for (size_t i = 0; i < keys.size(); ++i) CHECK(RowOf(*pulled, i) == InitialRow(serving.spec, keys[i]));
  CHECK(serving.executor->rows() == 0);
  // A training executor answers the same, and keeps the rows.
  auto trained = training.Call(pb::PULL, 0, keys);
  for (size_t i = 0; i < keys.size(); ++i) CHECK(RowOf(*trained, i) == RowOf(*pulled, i));
  CHECK(training.executor->rows() == keys.size());
}

TEST_CASE("a read-only executor under admission reads unseen keys as zeros, and rows it holds as they are",
          "[read_only]") {
  Config job;
  job.embedding.defaults.admission_min_count = 2;
  ExecutorHarness serving(AdagradTable("t", kDim, 0.1f), {.read_only = true}, job);
  REQUIRE(!serving.table->policy.admits_every_key());
  CHECK(serving.Pull(0, {5, 6}) == std::vector<float>(2 * kDim, 0.0f));
  CHECK(serving.executor->rows() == 0);
  // A row it holds (restored; here made by a push, which the server's
  // router refuses before the executor in a serving cluster) reads as it is.
  ExecutorHarness open(AdagradTable("t", kDim, 0.1f), {.read_only = true});
  open.Call(pb::PUSH, 0, {5}, std::vector<float>(kDim, 0.5f));
  ExecutorHarness training(AdagradTable("t", kDim, 0.1f), {});
  training.Call(pb::PUSH, 0, {5}, std::vector<float>(kDim, 0.5f));
  auto held = open.Call(pb::PULL, 0, {5});
  CHECK(RowOf(*held, 0) == RowOf(*training.Call(pb::PULL, 0, {5}), 0));
  CHECK(RowOf(*held, 0) != InitialRow(open.spec, 5));
}

}  // namespace
}  // namespace sparta::executor_read_only_test
