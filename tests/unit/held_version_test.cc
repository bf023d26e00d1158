// ScoreOnHeldVersion: a batch refused because the serving cluster dropped
// its version is scored again on newer versions, as often as the cluster
// moves on, until one is held or the deadline passes. Step by step, with
// versions made by the test and no sockets.
#include <map>

#include <catch2/catch.hpp>

#include "worker/serving/held_version.h"

namespace sparta::held_version_test {
namespace {

// A version with nothing in it but its number.
class Version : public ModelParameters {
 public:
  explicit Version(uint64_t v) : v_(v) {}
  uint64_t version() const override { return v_; }
  uint64_t rows() const override { return 0; }
  bool is_dense(size_t) const override { return false; }
  std::span<const float> Dense(size_t) const override { return {}; }
  absl::Status Gather(size_t, std::span<const uint64_t>, std::vector<float>*) const override {
    return absl::OkStatus();
  }

 private:
  const uint64_t v_;
};

std::shared_ptr<const ModelParameters> Make(uint64_t v) { return std::make_shared<Version>(v); }

// Scores to {version}, refusing every version below `held` as a serving
// cluster that dropped them does; counts its calls by version.
struct Scorer {
  uint64_t held;
  std::map<uint64_t, int> calls;
  ScoreFn fn() {
    return [this](const ModelParameters& t) -> absl::StatusOr<std::vector<float>> {
      ++calls[t.version()];
      if (t.version() < held) return absl::OutOfRangeError("version dropped");
      return std::vector<float>{static_cast<float>(t.version())};
    };
  }
};

TEST_CASE("a batch on a held version is scored once, and no newer version is asked for", "[serving]") {
  Scorer scorer{.held = 1};
  int asked = 0;
  VersionSource source{.current = [&] { ++asked; return Make(9); },
                       .await_newer = [&](uint64_t, std::chrono::milliseconds) { ++asked; return Make(9); }};
  auto scored = ScoreOnHeldVersion(Make(3), scorer.fn(), source, std::chrono::seconds(5));
  REQUIRE(scored.ok());
  CHECK(scored->version == 3);
  CHECK(scored->probs == std::vector<float>{3.0f});
  CHECK(scorer.calls == std::map<uint64_t, int>{{3, 1}});
  CHECK(asked == 0);
}

TEST_CASE("a refused batch is scored again on each newer version until one is held", "[serving]") {
  // The cluster moves on while each try computes: 3 and 4 are refused, 5
  // arrives only through the wait, and 6 is held.
  Scorer scorer{.held = 6};
  uint64_t made = 4;  // the newest version this front-end has made
  std::vector<uint64_t> waited_past;
  VersionSource source{.current = [&] { return Make(made); },
                       .await_newer = [&](uint64_t version, std::chrono::milliseconds timeout) {
                         CHECK(timeout.count() > 0);
                         waited_past.push_back(version);
                         made = version + 1;
                         return Make(made);
                       }};
  auto scored = ScoreOnHeldVersion(Make(3), scorer.fn(), source, std::chrono::seconds(5));
  REQUIRE(scored.ok());
  CHECK(scored->version == 6);
  CHECK(scored->probs == std::vector<float>{6.0f});
  // 4 was made already (no wait); 5 and 6 each had to be waited for.
  CHECK(scorer.calls == std::map<uint64_t, int>{{3, 1}, {4, 1}, {5, 1}, {6, 1}});
  CHECK(waited_past == std::vector<uint64_t>{4, 5});
}

TEST_CASE("a refused batch with no newer version in sight answers the refusal", "[serving]") {
  Scorer scorer{.held = 100};
  SECTION("nothing newer arrives within the deadline") {
    int waits = 0;
    VersionSource source{.current = [&] { return Make(3); },
                         .await_newer = [&](uint64_t, std::chrono::milliseconds) {
                           ++waits;
                           return std::shared_ptr<const ModelParameters>();
                         }};
    auto scored = ScoreOnHeldVersion(Make(3), scorer.fn(), source, std::chrono::seconds(5));
    CHECK(absl::IsOutOfRange(scored.status()));
    CHECK(waits == 1);
  }
  SECTION("the deadline has passed: no wait at all") {
    int waits = 0;
    VersionSource source{.current = [&] { return Make(3); },
                         .await_newer = [&](uint64_t, std::chrono::milliseconds) {
                           ++waits;
                           return Make(4);
                         }};
    auto scored = ScoreOnHeldVersion(Make(3), scorer.fn(), source, std::chrono::milliseconds(0));
    CHECK(absl::IsOutOfRange(scored.status()));
    CHECK(waits == 0);
  }
  SECTION("a front-end without a serving cluster never waits") {
    VersionSource source{.current = [&] { return Make(3); }};
    auto scored = ScoreOnHeldVersion(Make(3), scorer.fn(), source, std::chrono::seconds(5));
    CHECK(absl::IsOutOfRange(scored.status()));
  }
  CHECK(scorer.calls == std::map<uint64_t, int>{{3, 1}});
}

TEST_CASE("an error other than a dropped version is answered as it is", "[serving]") {
  int asked = 0;
  VersionSource source{.current = [&] { ++asked; return Make(9); }};
  ScoreFn failing = [](const ModelParameters&) -> absl::StatusOr<std::vector<float>> {
    return absl::UnavailableError("every copy of a shard is gone");
  };
  auto scored = ScoreOnHeldVersion(Make(3), failing, source, std::chrono::seconds(5));
  CHECK(absl::IsUnavailable(scored.status()));
  CHECK(asked == 0);
}

}  // namespace
}  // namespace sparta::held_version_test
