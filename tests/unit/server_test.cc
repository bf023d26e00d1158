// Server-side pieces: optimizers against scalar reference formulas, per-key
// deterministic initialization, the row arena, the duplicate filter and the
// key -> shard hash.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "common/hash.h"
#include "server/duplicate_filter.h"
#include "server/optimizer.h"
#include "server/table_shard.h"

namespace sparta::server_test {
namespace {

pb::OptimizerSpec Spec(pb::OptimizerSpec::Type type) {
  pb::OptimizerSpec s;
  s.set_type(type);
  s.set_learning_rate(0.1f);
  s.set_initial_accumulator(0.01f);
  s.set_epsilon(1e-8f);
  s.set_beta1(0.9f);
  s.set_beta2(0.999f);
  s.set_l1(0.01f);
  s.set_l2(0.02f);
  s.set_ftrl_beta(1.0f);
  return s;
}

// Runs `steps` updates of a 1-float row from w0 with gradients g(t) through
// the optimizer and through a double-precision reference; they must agree.
template <class Reference>
void CompareWithReference(pb::OptimizerSpec::Type type, Reference reference) {
  auto opt = Optimizer::Create(Spec(type));
  REQUIRE(opt.ok());
  std::vector<float> row(1 + (*opt)->StateFloats(1));
  row[0] = 0.3f;
  (*opt)->InitState(row.data(), 1);
  double w = 0.3;
  for (int t = 1; t <= 20; ++t) {
    const float g = std::sin(t * 1.3f);
    (*opt)->Apply(row.data(), &g, 1);
    w = reference(w, g, t);
    INFO("step " << t);
    REQUIRE(row[0] == Approx(w).epsilon(1e-4).margin(1e-6));
  }
}

TEST_CASE("sgd matches w -= lr (g + l2 w)") {
  CompareWithReference(pb::OptimizerSpec::SGD, [](double w, double g, int) { return w - 0.1 * (g + 0.02 * w); });
}

TEST_CASE("adagrad matches its reference") {
  double acc = 0.01;
  CompareWithReference(pb::OptimizerSpec::ADAGRAD, [&](double w, double g, int) {
    g += 0.02 * w;
    acc += g * g;
    return w - 0.1 * g / (std::sqrt(acc) + 1e-8);
  });
}

TEST_CASE("adam matches its reference") {
  double m = 0, v = 0;
  CompareWithReference(pb::OptimizerSpec::ADAM, [&](double w, double g, int t) {
    g += 0.02 * w;
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g * g;
    const double mhat = m / (1 - std::pow(0.9, t)), vhat = v / (1 - std::pow(0.999, t));
    return w - 0.1 * mhat / (std::sqrt(vhat) + 1e-8 / std::sqrt(1 - std::pow(0.999, t)));
  });
}

TEST_CASE("ftrl-proximal matches McMahan et al.'s per-coordinate algorithm") {
  const double alpha = 0.1, beta = 1.0, l1 = 0.01, l2 = 0.02;
  // z chosen so that the initial weight is reproduced (as the server does).
  double z = -0.3 * (beta / alpha + l2) - l1, n = 0;
  CompareWithReference(pb::OptimizerSpec::FTRL, [&](double w, double g, int) {
    const double sigma = (std::sqrt(n + g * g) - std::sqrt(n)) / alpha;
    z += g - sigma * w;
    n += g * g;
    return std::abs(z) <= l1 ? 0.0 : -(z - (z > 0 ? l1 : -l1)) / ((beta + std::sqrt(n)) / alpha + l2);
  });
}

TEST_CASE("a row is initialized from its key alone") {
  pb::TableSpec spec;
  spec.set_dim(8);
  spec.mutable_initializer()->set_type(pb::InitializerSpec::NORMAL);
  spec.mutable_initializer()->set_scale(0.1f);
  spec.mutable_initializer()->set_seed(5);
  auto opt = Optimizer::Create(Spec(pb::OptimizerSpec::ADAGRAD));
  REQUIRE(opt.ok());
  TableShard a(0, &spec, opt->get()), b(1, &spec, opt->get());
  // Different creation order in the two shards; same rows.
  uint64_t created = 0;
  for (uint64_t k = 0; k < 1000; ++k) a.FindOrCreate(k, &created);
  for (uint64_t k = 1000; k-- > 0;) b.FindOrCreate(k, &created);
  CHECK(created == 2000);
  a.FindOrCreate(7, &created);
  CHECK(created == 2000);
  double sum = 0, sum_sq = 0;
  for (uint64_t k = 0; k < 1000; ++k) {
    const float* ra = a.Find(k);
    const float* rb = b.Find(k);
    REQUIRE(ra != nullptr);
    for (int j = 0; j < 8; ++j) {
      REQUIRE(ra[j] == rb[j]);
      sum += ra[j];
      sum_sq += ra[j] * ra[j];
      REQUIRE(ra[8 + j] == 0.01f);  // adagrad accumulator
    }
  }
  CHECK(a.rows() == 1000);
  CHECK(a.Find(5000) == nullptr);
  // N(0, 0.1^2): the sample moments of 8000 draws are close.
  CHECK(std::abs(sum / 8000) < 0.005);
  CHECK(std::sqrt(sum_sq / 8000) == Approx(0.1).epsilon(0.05));
}

TEST_CASE("arena rows keep their address as the arena grows") {
  RowArena small(3);
  CHECK(small.bytes() == 0);
  small.Allocate();
  CHECK(small.bytes() == 16 * 3 * sizeof(float));  // a small first chunk
  RowArena arena(3);
  std::vector<float*> rows;
  for (int i = 0; i < 300000; ++i) {
    uint32_t idx = arena.Allocate();
    REQUIRE(idx == static_cast<uint32_t>(i));
    float* r = arena.row(idx);
    r[0] = i, r[1] = -i, r[2] = 2 * i;
    if (i % 1000 == 0) rows.push_back(r);
  }
  for (size_t j = 0; j < rows.size(); ++j) {
    REQUIRE(rows[j] == arena.row(j * 1000));
    REQUIRE(rows[j][2] == 2.0f * j * 1000);
  }
  // Rows are distinct, and the arena holds at most one chunk's worth of slack.
  for (uint32_t i = 0; i + 1 < 300000; i += 7) REQUIRE(arena.row(i + 1) != arena.row(i));
  CHECK(arena.bytes() <= 300000 * 3 * sizeof(float) + (1 << 20));
  // Every index maps into its own 3 floats: writing all rows loses none.
  for (uint32_t i = 0; i < 300000; ++i) arena.row(i)[1] = static_cast<float>(i);
  for (uint32_t i = 0; i < 300000; ++i) REQUIRE(arena.row(i)[1] == static_cast<float>(i));
}

TEST_CASE("the duplicate filter recognizes resends, in and out of order") {
  // As the server calls it: Contains() first, Record() only for a request
  // it accepted.
  DuplicateFilter f;
  auto seen_before = [&](uint32_t sender, uint64_t seq) {
    if (f.Contains(0, sender, seq)) return true;
    f.Record(0, sender, seq);
    return false;
  };
  CHECK_FALSE(seen_before(1, 10));
  CHECK_FALSE(seen_before(1, 12));
  CHECK_FALSE(seen_before(1, 11));  // late but new
  CHECK(seen_before(1, 10));
  CHECK(seen_before(1, 11));
  CHECK(seen_before(1, 12));
  CHECK_FALSE(seen_before(2, 10));  // another sender
  CHECK_FALSE(seen_before(1, 12 + DuplicateFilter::kWindow + 5));
  CHECK(seen_before(1, 13));  // fell out of the window: treated as seen
}

TEST_CASE("the duplicate filter's Contains does not record: a refused push still counts as new later") {
  DuplicateFilter f;
  CHECK_FALSE(f.Contains(0, 3, 7));
  CHECK_FALSE(f.Contains(0, 3, 7));  // asking twice records nothing
  f.Record(0, 3, 7);
  CHECK(f.Contains(0, 3, 7));
  CHECK_FALSE(f.Contains(0, 3, 8));
}

TEST_CASE("the duplicate filter tells a push's shards apart: a part of it for another shard is new") {
  // A push resent under a new shard map may reach a server twice, for
  // different shards: from its worker, and forwarded by another primary.
  DuplicateFilter f;
  f.Record(4, 3, 7);
  CHECK(f.Contains(4, 3, 7));
  CHECK_FALSE(f.Contains(5, 3, 7));
  f.Record(5, 3, 7);
  CHECK(f.Contains(5, 3, 7));
}

TEST_CASE("a shard's duplicate records travel with its rows: its new server recognizes what the cut held") {
  // The primary applied pushes 100..103 and 105 of sender 3 (and 200 of
  // sender 4) to shard 6 before the cut, and others to shard 7.
  DuplicateFilter primary;
  for (uint64_t seq : {100, 101, 102, 103, 105}) primary.Record(6, 3, seq);
  primary.Record(6, 4, 200);
  primary.Record(7, 3, 104);
  const std::vector<uint64_t> copy = primary.CopyShard(6);
  CHECK(copy.size() == 2 * DuplicateFilter::kWordsPerSender);
  // The new server already holds records of its own for the shard (a
  // forward that reached it before the mark, newer than the cut).
  DuplicateFilter target;
  target.Record(6, 3, 110);
  REQUIRE(target.MergeShard(6, copy));
  for (uint64_t seq : {100, 101, 102, 103, 105, 110}) CHECK(target.Contains(6, 3, seq));
  CHECK(target.Contains(6, 4, 200));
  CHECK_FALSE(target.Contains(6, 3, 104));  // applied to shard 7 only
  CHECK_FALSE(target.Contains(6, 3, 106));  // after the cut: new
  CHECK_FALSE(target.Contains(6, 4, 199));
  CHECK_FALSE(target.Contains(7, 3, 104));  // shard 7's records stayed behind
  // What is older than the merged window counts as seen, as before.
  target.Record(6, 3, 110 + DuplicateFilter::kWindow);
  CHECK(target.Contains(6, 3, 105));
  // A frame that is not such a copy adds nothing.
  DuplicateFilter other;
  CHECK_FALSE(other.MergeShard(6, std::vector<uint64_t>(copy.begin(), copy.end() - 1)));
  std::vector<uint64_t> bad_sender = copy;
  bad_sender[0] = uint64_t{1} << 40;
  CHECK_FALSE(other.MergeShard(6, bad_sender));
  CHECK_FALSE(other.Contains(6, 3, 100));
  CHECK(other.MergeShard(6, {}));
}

TEST_CASE("keys spread evenly over shards") {
  const int bits = 6;
  std::vector<int> count(1 << bits);
  for (uint64_t k = 0; k < 640000; ++k) ++count[ShardOf(k, bits)];
  for (int c : count) REQUIRE(std::abs(c - 10000) < 500);
  CHECK(ShardOf(12345, 0) == 0);
}

}  // namespace
}  // namespace sparta::server_test
