// sparta-datagen: writes Criteo-like click data drawn from a known ground
// truth, for the quickstart, the tests and the benchmarks.
//
// The hidden model: each of 26 categorical fields draws a token from a
// heavy-tailed distribution over its vocabulary (log-uniform, or Zipf with
// --zipf S, vocabularies of up to 2^63 tokens, drawn in O(1) memory, so key
// spaces of 10^8 and more stream out in bounded memory); each of 13
// integer fields draws a log-normal count (sometimes missing). The click
// logit is
//     bias + sum_f w[f, token_f] + sum_i a_i * log1p(count_i)
//          + interaction * sum_{f<g, both in the first `interaction_fields`} <v[f,token_f], v[g,token_g]>
// with w, v drawn deterministically from (seed, field, token). The label is a
// Bernoulli draw of sigmoid(logit). --truth writes the true probability of
// every test row, so a test can compare a model with the Bayes-optimal one.
//
// The same rows can be written as libsvm (one-hot features, integer counts
// bucketized like the Criteo reader does) so that liblinear sees exactly the
// information Sparta's lr sees.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/hash.h"

namespace {

using sparta::Mix64;

constexpr int kIntFields = 13;
constexpr int kCatFields = 26;

// splitmix64 stream: fast, reproducible, good enough for sampling.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() { return Mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  double Uniform() { return (Next() >> 11) * (1.0 / 9007199254740992.0); }
  double Normal() {
    const double u1 = Uniform() + 1e-300, u2 = Uniform();
    return std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
  }

 private:
  uint64_t state_;
};

// Zipf(s) over {1, ..., n} by rejection-inversion (Hoermann and Derflinger,
// "Rejection-inversion to generate variates from monotone discrete
// distributions", 1996): O(1) memory and expected O(1) time for any n, where
// a table of n probabilities would not fit.
class ZipfSampler {
 public:
  ZipfSampler(uint64_t n, double s) : n_(static_cast<double>(n)), s_(s) {
    h_x1_ = H(1.5) - 1.0;
    h_n_ = H(n_ + 0.5);
    squeeze_ = 2.0 - HInverse(H(2.5) - h(2.0));
  }
  uint64_t Sample(Rng& rng) const {
    while (true) {
      const double u = h_n_ + rng.Uniform() * (h_x1_ - h_n_);
      const double x = HInverse(u);
      double k = std::floor(x + 0.5);
      k = std::min(std::max(k, 1.0), n_);
      if (k - x <= squeeze_ || u >= H(k + 0.5) - h(k)) return static_cast<uint64_t>(k);
    }
  }

 private:
  // log1p(x)/x and expm1(x)/x, continuous at 0.
  static double Log1pOverX(double x) { return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1 - x / 2; }
  static double Expm1OverX(double x) { return std::abs(x) > 1e-8 ? std::expm1(x) / x : 1 + x / 2; }
  double h(double x) const { return std::exp(-s_ * std::log(x)); }
  // An antiderivative of h, and its inverse.
  double H(double x) const {
    const double log_x = std::log(x);
    return Expm1OverX((1.0 - s_) * log_x) * log_x;
  }
  double HInverse(double x) const {
    const double t = std::max(-1.0, x * (1.0 - s_));
    return std::exp(Log1pOverX(t) * x);
  }

  double n_, s_, h_x1_, h_n_, squeeze_;
};

// A deterministic standard normal for (seed, a, b, c).
double HashNormal(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  Rng rng(Mix64(seed ^ Mix64(a * 1000003 + Mix64(b * 7919 + c))));
  return rng.Normal();
}

struct Options {
  uint64_t train_rows = 100000;
  uint64_t test_rows = 20000;
  std::string train_out, test_out, train_libsvm, test_libsvm, truth_out;
  uint64_t seed = 1;
  double interaction = 0.0;
  int interaction_fields = 6;
  int latent_dim = 4;
  double missing = 0.05;
  double bias = -1.2;
  double weight_scale = 0.6;
  uint64_t max_vocab = 100000;
  std::vector<uint64_t> vocab;  // per field (one value: every field); overrides max_vocab
  double zipf = 0;              // > 0: Zipf exponent of the token draws, else log-uniform
  uint64_t bad_lines = 0;  // malformed lines to inject into the training file
  std::vector<ZipfSampler> samplers;  // per field, with zipf
};

// Vocabulary sizes: a spread from tiny to max_vocab, like Criteo's fields.
uint64_t VocabSize(int field, const Options& o) {
  if (!o.vocab.empty()) return o.vocab[o.vocab.size() == 1 ? 0 : field];
  if (field < o.interaction_fields) return 20 + 10 * field;  // small, so interactions are learnable
  const double frac = static_cast<double>(field) / kCatFields;
  return std::max<uint64_t>(10, static_cast<uint64_t>(std::pow(static_cast<double>(o.max_vocab), frac)));
}

struct Row {
  int label = 0;
  double prob = 0;
  int64_t ints[kIntFields];
  bool int_missing[kIntFields];
  uint64_t tokens[kCatFields];
  bool cat_missing[kCatFields];
};

Row Draw(Rng& rng, const Options& o) {
  Row r;
  double logit = o.bias;
  for (int i = 0; i < kIntFields; ++i) {
    r.int_missing[i] = rng.Uniform() < o.missing;
    r.ints[i] = static_cast<int64_t>(std::exp(1.0 + 1.5 * rng.Normal()));
    if (!r.int_missing[i]) logit += 0.15 * HashNormal(o.seed, 1000 + i, 0, 0) * std::log1p(r.ints[i]);
  }
  std::vector<double> latent(o.latent_dim * kCatFields, 0.0);
  for (int f = 0; f < kCatFields; ++f) {
    r.cat_missing[f] = f >= o.interaction_fields && rng.Uniform() < o.missing;
    // Log-uniform (or Zipf) ids: a few tokens are very common, most are rare.
    const uint64_t vocab = VocabSize(f, o);
    r.tokens[f] = o.zipf > 0 ? o.samplers[f].Sample(rng) - 1
                             : static_cast<uint64_t>(std::pow(static_cast<double>(vocab), rng.Uniform())) - 1;
    if (r.cat_missing[f]) continue;
    logit += o.weight_scale * HashNormal(o.seed, f, r.tokens[f], 0);
    if (f < o.interaction_fields) {
      for (int j = 0; j < o.latent_dim; ++j) {
        latent[f * o.latent_dim + j] = HashNormal(o.seed, f, r.tokens[f], 1 + j) / std::sqrt(o.latent_dim);
      }
    }
  }
  if (o.interaction != 0) {
    double pair = 0;
    for (int f = 0; f < o.interaction_fields; ++f) {
      for (int g = f + 1; g < o.interaction_fields; ++g) {
        for (int j = 0; j < o.latent_dim; ++j) pair += latent[f * o.latent_dim + j] * latent[g * o.latent_dim + j];
      }
    }
    logit += o.interaction * pair;
  }
  r.prob = 1 / (1 + std::exp(-logit));
  r.label = rng.Uniform() < r.prob ? 1 : 0;
  return r;
}

// A token's hex text: 8 digits while the field's vocabulary fits 2^24 (as
// Criteo's), 16 beyond, so that a huge vocabulary keeps distinct tokens
// distinct (Mix64 is a bijection).
uint64_t TokenHex(int field, uint64_t token, uint64_t seed, uint64_t vocab) {
  const uint64_t h = Mix64((static_cast<uint64_t>(field) << 56) ^ token ^ Mix64(seed));
  return vocab <= (uint64_t{1} << 24) ? static_cast<uint32_t>(h) : h;
}

void WriteCriteo(std::ostream& out, const Row& r, const Options& o) {
  char buf[1024];
  int n = std::snprintf(buf, sizeof(buf), "%d", r.label);
  for (int i = 0; i < kIntFields; ++i) {
    n += r.int_missing[i] ? std::snprintf(buf + n, sizeof(buf) - n, "\t")
                          : std::snprintf(buf + n, sizeof(buf) - n, "\t%lld", static_cast<long long>(r.ints[i]));
  }
  for (int f = 0; f < kCatFields; ++f) {
    const uint64_t vocab = VocabSize(f, o);
    n += r.cat_missing[f] ? std::snprintf(buf + n, sizeof(buf) - n, "\t")
                          : std::snprintf(buf + n, sizeof(buf) - n, vocab <= (uint64_t{1} << 24) ? "\t%08llx" : "\t%016llx",
                                          static_cast<unsigned long long>(TokenHex(f, r.tokens[f], o.seed, vocab)));
  }
  buf[n++] = '\n';
  out.write(buf, n);
}

// One-hot libsvm: integer field i bucket b -> index 1 + i*1000 + b (buckets
// as the Criteo reader makes them); categorical field f token t ->
// 1 + 13*1000 + offset_f + t. Indices ascend within a line, as liblinear wants.
void WriteLibsvm(std::ostream& out, const Row& r, const Options& o) {
  char buf[1024];
  int n = std::snprintf(buf, sizeof(buf), "%d", r.label ? 1 : -1);
  for (int i = 0; i < kIntFields; ++i) {
    if (r.int_missing[i]) continue;
    const int64_t v = r.ints[i];
    const int64_t bucket = v <= 2 ? v : static_cast<int64_t>(std::pow(std::log(static_cast<double>(v)), 2));
    n += std::snprintf(buf + n, sizeof(buf) - n, " %lld:1", static_cast<long long>(1 + i * 1000 + bucket));
  }
  uint64_t offset = 1 + kIntFields * 1000;
  for (int f = 0; f < kCatFields; ++f) {
    if (!r.cat_missing[f]) {
      n += std::snprintf(buf + n, sizeof(buf) - n, " %llu:1", static_cast<unsigned long long>(offset + r.tokens[f]));
    }
    offset += VocabSize(f, o);
  }
  buf[n++] = '\n';
  out.write(buf, n);
}

bool Open(std::ofstream& f, const std::string& path) {
  if (path.empty()) return true;
  f.open(path);
  if (!f) std::cerr << "sparta-datagen: cannot write " << path << "\n";
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app("sparta-datagen: Criteo-like click data from a known ground truth");
  app.add_option("--train-rows", o.train_rows, "training rows");
  app.add_option("--test-rows", o.test_rows, "test rows");
  app.add_option("--train", o.train_out, "training file (Criteo TSV)");
  app.add_option("--test", o.test_out, "test file (Criteo TSV)");
  app.add_option("--train-libsvm", o.train_libsvm, "the training rows as libsvm");
  app.add_option("--test-libsvm", o.test_libsvm, "the test rows as libsvm");
  app.add_option("--truth", o.truth_out, "true click probability of each test row");
  app.add_option("--seed", o.seed, "seed of the hidden model and the draws");
  app.add_option("--interaction", o.interaction, "strength of pairwise field interactions (0: none)");
  app.add_option("--interaction-fields", o.interaction_fields, "fields taking part in interactions")
      ->check(CLI::Range(0, kCatFields));
  app.add_option("--missing", o.missing, "probability of a missing value")->check(CLI::Range(0.0, 1.0));
  app.add_option("--max-vocab", o.max_vocab, "largest vocabulary of a categorical field");
  app.add_option("--vocab", o.vocab, "vocabulary of each categorical field (26 values), or one for all")
      ->delimiter(',');
  app.add_option("--zipf", o.zipf, "draw tokens from Zipf with this exponent (e.g. 1.1) instead of log-uniform")
      ->check(CLI::Range(0.0, 10.0));
  app.add_option("--bad-lines", o.bad_lines, "malformed lines to inject into the training file");
  CLI11_PARSE(app, argc, argv);
  if (!o.vocab.empty() && o.vocab.size() != 1 && o.vocab.size() != kCatFields) {
    std::cerr << "sparta-datagen: --vocab takes 1 or " << kCatFields << " sizes; got " << o.vocab.size() << "\n";
    return 1;
  }
  for (uint64_t v : o.vocab) {
    if (v == 0 || v > (uint64_t{1} << 62)) {
      std::cerr << "sparta-datagen: --vocab sizes must be in [1, 2^62]\n";
      return 1;
    }
  }
  if (o.zipf > 0) {
    for (int f = 0; f < kCatFields; ++f) o.samplers.emplace_back(VocabSize(f, o), o.zipf);
  }

  std::ofstream train, test, train_svm, test_svm, truth;
  if (!Open(train, o.train_out) || !Open(test, o.test_out) || !Open(train_svm, o.train_libsvm) ||
      !Open(test_svm, o.test_libsvm) || !Open(truth, o.truth_out)) {
    return 1;
  }
  Rng rng(Mix64(o.seed ^ 0x5eed));
  const uint64_t bad_every = o.bad_lines ? std::max<uint64_t>(1, o.train_rows / o.bad_lines) : 0;
  uint64_t bad_written = 0;
  for (uint64_t i = 0; i < o.train_rows; ++i) {
    Row r = Draw(rng, o);
    if (train.is_open()) WriteCriteo(train, r, o);
    if (train_svm.is_open()) WriteLibsvm(train_svm, r, o);
    if (bad_every && i % bad_every == bad_every / 2 && bad_written < o.bad_lines) {
      if (train.is_open()) train << "1\tnot-a-number\t\t\n";
      if (train_svm.is_open()) train_svm << "1 7:x\n";
      ++bad_written;
    }
  }
  char buf[32];
  for (uint64_t i = 0; i < o.test_rows; ++i) {
    Row r = Draw(rng, o);
    if (test.is_open()) WriteCriteo(test, r, o);
    if (test_svm.is_open()) WriteLibsvm(test_svm, r, o);
    if (truth.is_open()) truth.write(buf, std::snprintf(buf, sizeof(buf), "%.9g\n", r.prob));
  }
  return 0;
}
