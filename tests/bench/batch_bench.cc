// sparta-batch-bench: how fast a worker's reader thread turns examples into
// batches (BatchBuilder: key de-duplication, slot lists, fresh-keys-first
// order), against the textbook de-duplication of the same keys (copy, sort,
// unique) timed in the same run. Criteo-like examples: 39 fields, keys drawn
// from a heavy-tailed distribution, batches of 512. In-process; no cluster.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "worker/data/batch.h"

namespace {

constexpr int kBatch = 512;
constexpr int kFields = 39;
constexpr int kDistinctBatches = 20;

std::vector<sparta::Example> MakeExamples() {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<sparta::Example> examples(kBatch * kDistinctBatches);
  for (auto& ex : examples) {
    ex.label = 0;
    for (uint32_t f = 0; f < kFields; ++f) {
      const double u = uniform(rng);
      const auto token = static_cast<uint64_t>(1.0 / (u * u + 1e-7));  // P(token > t) ~ t^-1/2
      ex.features.push_back(sparta::Feature{.key = token * 1000003ULL + f, .value = 1.0f, .field = f});
    }
  }
  return examples;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int batches = argc > 1 ? std::stoi(argv[1]) : 4000;
  const std::string json = argc > 2 ? argv[2] : "";
  const auto examples = MakeExamples();
  auto batch_of = [&](int i) { return &examples[(i % kDistinctBatches) * kBatch]; };

  size_t built_keys = 0;
  sparta::BatchBuilder builder;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < batches; ++i) {
    const sparta::Example* first = batch_of(i);
    for (int e = 0; e < kBatch; ++e) builder.Add(first[e]);
    built_keys += builder.Finish(0)->unique_keys.size();
  }
  const double built_s = Seconds(start);

  size_t sorted_keys = 0;
  std::vector<uint64_t> keys;
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < batches; ++i) {
    const sparta::Example* first = batch_of(i);
    keys.clear();
    for (int e = 0; e < kBatch; ++e)
      for (const auto& f : first[e].features) keys.push_back(f.key);
    std::sort(keys.begin(), keys.end());
    sorted_keys += std::unique(keys.begin(), keys.end()) - keys.begin();
  }
  const double sorted_s = Seconds(start);
  if (built_keys != sorted_keys) {
    std::fprintf(stderr, "batch bench: %zu unique keys built, %zu by sort+unique\n", built_keys, sorted_keys);
    return 1;
  }
  const double eps = double(batches) * kBatch / built_s;
  const double ratio = sorted_s / built_s;
  std::printf("%-40s %14.0f examples/s\n%-40s %14.2f x (sort+unique in the same run)\n", "batch_build_39_fields", eps,
              "batch_build_vs_sort_unique", ratio);
  if (!json.empty()) {
    std::ofstream(json) << "[{\"name\": \"batch_build_39_fields\", \"unit\": \"examples/s\", \"value\": " << eps
                        << "},\n {\"name\": \"batch_build_vs_sort_unique\", \"unit\": \"ratio\", \"value\": " << ratio
                        << "}]\n";
  }
  return 0;
}
