// Serving without sockets: dynamic batching (RequestBatcher), the HTTP
// API's meaning (PredictApi: answers, and a 4xx that says what is wrong for
// each kind of bad request), and the latency histogram /metrics shows.
// sparta-serve end to end, against a worker's own predictions, is in
// tests/integration/test_serving.py.
#include <catch2/catch.hpp>

#include <future>
#include <thread>

#include "absl/strings/escaping.h"
#include "common/latency_histogram.h"
#include "ctl/predict_client.h"
#include "worker/serving/predict_api.h"
#include "worker/serving/request_batcher.h"
#include "worker/serving/zmq_predict_endpoint.h"

namespace sparta::serving_test {
namespace {

using Clock = RequestBatcher::Clock;

Example WithLabel(float label) {
  Example ex;
  ex.label = label;
  return ex;
}

// Scores an example as label / 10, and records the size of each batch.
struct Recorder {
  std::mutex mu;
  std::vector<size_t> batch_sizes;
  RequestBatcher::Compute Compute(uint64_t version = 7) {
    return [this, version](int, std::span<const Example* const> examples) -> absl::StatusOr<RequestBatcher::Scored> {
      std::lock_guard<std::mutex> lock(mu);
      batch_sizes.push_back(examples.size());
      RequestBatcher::Scored scored{.version = version};
      for (const Example* ex : examples) scored.probs.push_back(ex->label / 10);
      return scored;
    };
  }
};

TEST_CASE("requests are batched up to max_batch, each answered with its own examples' scores", "[serving]") {
  Recorder recorder;
  // A delay no test run reaches: a batch leaves because it is full.
  RequestBatcher batcher({.threads = 1, .max_batch = 4, .max_delay = std::chrono::seconds(60)}, recorder.Compute());
  std::vector<std::future<absl::StatusOr<RequestBatcher::Scored>>> answers;
  for (int i = 0; i < 8; ++i) {
    std::vector<Example> one;
    one.push_back(WithLabel(static_cast<float>(i)));
    answers.push_back(batcher.Submit(std::move(one), Clock::now() + std::chrono::hours(1)));
  }
  for (int i = 0; i < 8; ++i) {
    auto scored = answers[i].get();
    REQUIRE(scored.ok());
    REQUIRE(scored->probs.size() == 1);
    CHECK(scored->probs[0] == static_cast<float>(i) / 10);
    CHECK(scored->version == 7);
  }
  CHECK(batcher.batches() == 2);
  CHECK(batcher.examples() == 8);
  CHECK(recorder.batch_sizes == std::vector<size_t>{4, 4});
}

TEST_CASE("a request over max_batch is computed whole, one past its deadline is not computed", "[serving]") {
  Recorder recorder;
  RequestBatcher batcher({.threads = 2, .max_batch = 4, .max_delay = std::chrono::microseconds(0)},
                         recorder.Compute());
  std::vector<Example> many;
  for (int i = 0; i < 10; ++i) many.push_back(WithLabel(static_cast<float>(i)));
  auto whole = batcher.Submit(std::move(many), Clock::now() + std::chrono::hours(1)).get();
  REQUIRE(whole.ok());
  REQUIRE(whole->probs.size() == 10);
  CHECK(whole->probs[9] == 0.9f);
  std::vector<Example> late;
  late.push_back(WithLabel(1));
  auto expired = batcher.Submit(std::move(late), Clock::now() - std::chrono::milliseconds(1)).get();
  CHECK(absl::IsDeadlineExceeded(expired.status()));
  CHECK(recorder.batch_sizes == std::vector<size_t>{10});
}

TEST_CASE("a model that fails is an error for the requests of its batch, not a crash", "[serving]") {
  RequestBatcher batcher({.threads = 1, .max_batch = 4, .max_delay = std::chrono::microseconds(0)},
                         [](int, std::span<const Example* const>) -> absl::StatusOr<RequestBatcher::Scored> {
                           return RequestBatcher::Scored{.probs = {0.5f}};  // one score for two examples
                         });
  std::vector<Example> two(2);
  auto answer = batcher.Submit(std::move(two), Clock::now() + std::chrono::hours(1)).get();
  CHECK(absl::IsInternal(answer.status()));
}

struct Api {
  Recorder recorder;
  uint64_t version = 7;
  RequestBatcher batcher{{.threads = 1, .max_batch = 64, .max_delay = std::chrono::microseconds(0)},
                         recorder.Compute()};
  PredictApi api{{.model_name = "ctr", .data_format = "libsvm"},
                 []() -> absl::StatusOr<std::unique_ptr<Reader>> { return NewLibsvmReader(); },
                 &batcher,
                 [this] { return version; }};
};

TEST_CASE("predict: lines in the job's format in, their scores and the model version out", "[serving]") {
  Api a;
  HttpReply ok = a.api.Predict("ctr", R"({"instances": ["1 3:1 7:0.5", "0 2:1\n"]})");
  CHECK(ok.status == 200);
  CHECK(ok.body == "{\"predictions\": [0.100000001, 0], \"model_version\": 7}\n");
  CHECK(a.api.Ready().status == 200);
  CHECK(a.api.ModelStatus("ctr").status == 200);
  CHECK_THAT(a.api.ModelStatus("ctr").body, Catch::Contains("\"version\": \"7\""));
  MetricWriter out;
  a.api.WriteMetrics(out);
  const std::string text = out.Render();
  CHECK_THAT(text, Catch::Contains("sparta_serving_requests_total{outcome=\"ok\"} 1"));
  CHECK_THAT(text, Catch::Contains("sparta_serving_request_seconds_count 1"));
  CHECK_THAT(text, Catch::Contains("sparta_serving_predictions_total 2"));
}

TEST_CASE("predict: after StopTaking a request is refused with 503 and never reaches the batcher", "[serving]") {
  Api a;
  // Shutdown closes the door before the batcher goes: the ZeroMQ endpoint's
  // thread may still hand requests over, and they must not enter it.
  a.api.StopTaking();
  HttpReply refused = a.api.Predict("ctr", R"({"instances": ["1 3:1"]})");
  CHECK(refused.status == 503);
  CHECK_THAT(refused.body, Catch::Contains("shutting down"));
  const std::string_view line = "1 3:1";
  std::optional<PredictOutcome> got;
  a.api.PredictRecords("ctr", std::span<const std::string_view>(&line, 1), std::nullopt, Clock::now(),
                       [&got](PredictOutcome outcome) { got = std::move(outcome); });
  REQUIRE(got.has_value());  // answered at once, on this thread
  CHECK(absl::IsUnavailable(got->status));
  CHECK(a.batcher.batches() == 0);
  std::lock_guard<std::mutex> lock(a.recorder.mu);
  CHECK(a.recorder.batch_sizes.empty());
}

// Scores an example by everything a reader put in it (keys, fields, values,
// dense features), so that two inputs score alike only if they parse alike.
RequestBatcher::Compute FingerprintScore() {
  return [](int, std::span<const Example* const> examples) -> absl::StatusOr<RequestBatcher::Scored> {
    RequestBatcher::Scored scored{.version = 3};
    for (const Example* ex : examples) {
      uint64_t h = static_cast<uint64_t>(ex->label);
      for (const Feature& f : ex->features) h = h * 1000003 + f.key * 31 + f.field + static_cast<uint64_t>(f.value * 1e6);
      for (float d : ex->dense) h = h * 1000003 + static_cast<uint64_t>(d * 1e6);
      scored.probs.push_back(static_cast<float>(h % 1000003) / 1000003);
    }
    return scored;
  };
}

TEST_CASE("predict: an instance as an object of named fields scores as its line", "[serving]") {
  for (std::string format : {"criteo", "libsvm"}) {
    INFO(format);
    RequestBatcher batcher({.threads = 1, .max_batch = 64, .max_delay = std::chrono::microseconds(0)},
                           FingerprintScore());
    PredictApi api({.model_name = "ctr", .data_format = format},
                   [format]() -> absl::StatusOr<std::unique_ptr<Reader>> {
                     return format == "criteo" ? NewCriteoReader() : NewLibsvmReader();
                   },
                   &batcher, [] { return uint64_t{3}; });
    std::string lines, objects;
    if (format == "criteo") {
      // I1, I2 and I5 set (I3 an explicit null), C1 and C26.
      std::string line = "1	5	0			1200";
      for (int i = 6; i <= 13; ++i) line += "	";
      line += "	68fd1e64";
      for (int i = 2; i <= 25; ++i) line += "	";
      line += "	0a1b";
      lines = R"({"instances": [")" + absl::CEscape(line) + R"("]})";
      objects = R"({"instances": [{"label": 1, "I1": 5, "I2": 0, "I3": null, "I5": 1200, "C1": "68fd1e64", "C26": "0a1b"}]})";
    } else {
      lines = R"({"instances": ["1 3:1 7:0.25 12:-2"]})";
      objects = R"({"instances": [{"12": -2, "label": 1, "7": 0.25, "3": 1}]})";
    }
    HttpReply from_line = api.Predict("ctr", lines);
    HttpReply from_object = api.Predict("ctr", objects);
    REQUIRE(from_line.status == 200);
    CHECK(from_object.status == 200);
    CHECK(from_object.body == from_line.body);
  }
  RequestBatcher batcher({.threads = 1, .max_batch = 64, .max_delay = std::chrono::microseconds(0)},
                         FingerprintScore());
  PredictApi plugin({.model_name = "ctr", .data_format = ""},
                    []() -> absl::StatusOr<std::unique_ptr<Reader>> { return NewLibsvmReader(); }, &batcher,
                    [] { return uint64_t{3}; });
  HttpReply refused = plugin.Predict("ctr", R"({"instances": [{"3": 1}]})");
  CHECK(refused.status == 400);
  CHECK_THAT(refused.body, Catch::Contains("reader plugin"));
}

TEST_CASE("predict over ZeroMQ: a PREDICT's lines in, its RESPONSE header out", "[serving]") {
  Message m;
  m.header.set_type(pb::PREDICT);
  m.header.set_num_keys(2);
  m.frames.emplace_back(std::string_view("1 3:1\n0 2:1\n"));
  auto records = PredictRecordsOf(m);
  REQUIRE(records.ok());
  CHECK(*records == std::vector<std::string_view>{"1 3:1", "0 2:1"});
  m.header.set_num_keys(3);
  CHECK(absl::IsInvalidArgument(PredictRecordsOf(m).status()));
  m.header.set_num_keys(1);
  CHECK(absl::IsInvalidArgument(PredictRecordsOf(m).status()));
  m.frames[0] = zmq::message_t(std::string_view("1 3:1"));  // no newline
  CHECK_THAT(std::string(PredictRecordsOf(m).status().message()), Catch::Contains("newline"));
  // What a client makes is what the endpoint reads.
  const std::vector<std::string> sent_lines = {"1 3:1", "", "0 2:1 7:0.5"};
  PredictRequest request = MakePredictRequest("ctr", sent_lines, 250, 17);
  CHECK(request.header.type() == pb::PREDICT);
  CHECK(request.header.model() == "ctr");
  CHECK(request.header.deadline_ms() == 250);
  CHECK(request.header.seq() == 17);
  Message sent;
  sent.header = request.header;
  sent.frames.emplace_back(std::string_view(request.frame));
  auto read_back = PredictRecordsOf(sent);
  REQUIRE(read_back.ok());
  CHECK(*read_back == std::vector<std::string_view>{"1 3:1", "", "0 2:1 7:0.5"});

  pb::Header ok = PredictReplyHeader(PredictOutcome{.probs = {0.25f, 0.5f}, .version = 9}, 41);
  CHECK(ok.type() == pb::RESPONSE);
  CHECK(ok.seq() == 41);
  CHECK(ok.status() == 0);
  CHECK(ok.num_keys() == 2);
  CHECK(ok.dim() == 1);
  CHECK(ok.model_version() == 9);
  pb::Header bad = PredictReplyHeader(PredictOutcome{.status = absl::InvalidArgumentError("instances[0]: no")}, 42);
  CHECK(bad.status() == static_cast<int>(absl::StatusCode::kInvalidArgument));
  CHECK(bad.error() == "instances[0]: no");
  CHECK(bad.num_keys() == 0);

  // The answer comes through PredictApi, as HTTP's does.
  Api a;
  std::promise<PredictOutcome> answered;
  const std::vector<std::string_view> lines = {"1 3:1", "0 2:1"};
  a.api.PredictRecords("ctr", lines, std::nullopt, PredictApi::Clock::now(),
                       [&](PredictOutcome o) { answered.set_value(std::move(o)); });
  PredictOutcome outcome = answered.get_future().get();
  REQUIRE(outcome.status.ok());
  CHECK(outcome.probs == std::vector<float>{0.1f, 0.0f});
  CHECK(outcome.version == 7);
}

TEST_CASE("predict: each bad request gets a 4xx that says what is wrong", "[serving]") {
  Api a;
  struct Case {
    const char* model;
    const char* body;
    int status;
    const char* says;
  };
  const Case cases[] = {
      {"ctr", "{\"instances\": [", 400, "not a JSON object"},
      {"ctr", "[1, 2]", 400, "not a JSON object"},
      {"ctr", "{}", 400, "no \\\"instances\\\""},
      {"ctr", R"({"instances": "1 3:1"})", 400, "no \\\"instances\\\""},
      {"ctr", R"({"instances": []})", 400, "empty"},
      {"ctr", R"({"instances": ["1 3:1", 5]})", 400, "instances[1] is neither a string nor an object"},
      {"ctr", R"({"instances": [{"3": "x"}]})", 400, "instances[0]: feature '3' must have a number"},
      {"ctr", R"({"instances": [{"label": 1, "x": 1}]})", 400, "instances[0]: unknown field 'x'"},
      {"ctr", R"({"instances": ["1 3:1", "1 x:y"]})", 400, "instances[1]: "},
      {"ctr", R"({"instances": ["1 3:1"], "deadline_ms": -1})", 400, "deadline_ms"},
      {"ctr", R"({"instances": ["1 3:1"], "extra": 1})", 400, "unknown field 'extra'"},
      {"other", R"({"instances": ["1 3:1"]})", 404, "serves 'ctr'"},
  };
  for (const Case& c : cases) {
    INFO(c.body);
    HttpReply reply = a.api.Predict(c.model, c.body);
    CHECK(reply.status == c.status);
    CHECK_THAT(reply.body, Catch::StartsWith("{\"error\": ") && Catch::Contains(c.says));
  }
  CHECK(a.recorder.batch_sizes.empty());  // nothing bad reached the model
  a.version = 0;
  CHECK(a.api.Predict("ctr", R"({"instances": ["1 3:1"]})").status == 503);
  CHECK(a.api.Ready().status == 503);
  CHECK(a.api.Health().status == 200);
}

TEST_CASE("the latency histogram renders cumulative buckets, +Inf, sum and count", "[serving]") {
  LatencyHistogram h;
  h.Observe(0.0004);  // <= 500 us
  h.Observe(0.003);   // <= 5 ms
  h.Observe(20.0);    // above every bound
  MetricWriter out;
  h.WriteTo(out, "x_seconds", "help");
  const std::string text = out.Render();
  CHECK_THAT(text, Catch::Contains("# TYPE x_seconds histogram"));
  CHECK_THAT(text, Catch::Contains("x_seconds_bucket{le=\"0.00025\"} 0"));
  CHECK_THAT(text, Catch::Contains("x_seconds_bucket{le=\"0.0005\"} 1"));
  CHECK_THAT(text, Catch::Contains("x_seconds_bucket{le=\"0.005\"} 2"));
  CHECK_THAT(text, Catch::Contains("x_seconds_bucket{le=\"10\"} 2"));
  CHECK_THAT(text, Catch::Contains("x_seconds_bucket{le=\"+Inf\"} 3"));
  CHECK_THAT(text, Catch::Contains("x_seconds_count 3"));
  CHECK_THAT(text, Catch::Contains("x_seconds_sum 20.0034"));
}

TEST_CASE("the client picks the replica with the fewest requests in flight, skipping one that failed", "[serving]") {
  using C = ReplicaChooser::Clock;
  const C::time_point t0 = C::now();
  ReplicaChooser chooser(3, std::chrono::seconds(1));
  // Three in flight, one on each; then the least loaded again.
  std::vector<size_t> picked;
  for (int i = 0; i < 3; ++i) picked.push_back(chooser.Pick(std::nullopt, t0)->replica);
  std::sort(picked.begin(), picked.end());
  CHECK(picked == std::vector<size_t>{0, 1, 2});
  chooser.Done(1, true, t0);
  CHECK(chooser.Pick(std::nullopt, t0)->replica == 1);
  // A retry goes elsewhere.
  chooser.Done(1, true, t0);
  CHECK(chooser.Pick(size_t{1}, t0)->replica != 1);
  // Replica 2 fails: no request goes there until it is rechecked.
  chooser.Done(2, false, t0);
  CHECK_FALSE(chooser.up(2));
  for (int i = 0; i < 10; ++i) CHECK(chooser.Pick(std::nullopt, t0)->replica != 2);
  // One request at a time: ties go round, so every replica gets its share
  // (not all to the first).
  ReplicaChooser sequential(3, std::chrono::seconds(1));
  std::vector<size_t> seen;
  for (int i = 0; i < 6; ++i) {
    const size_t r = sequential.Pick(std::nullopt, t0)->replica;
    sequential.Done(r, true, t0);
    seen.push_back(r);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<size_t>{0, 0, 1, 1, 2, 2});
  // With every other replica excluded or down: none before its recheck is due...
  ReplicaChooser two(2, std::chrono::seconds(1));
  two.Pick(std::nullopt, t0);  // replica 0
  two.Done(0, false, t0);
  CHECK_FALSE(two.Pick(size_t{1}, t0).has_value());
  // ...then one request checks its health first; the others still wait.
  auto check = two.Pick(size_t{1}, t0 + std::chrono::seconds(2));
  REQUIRE(check.has_value());
  CHECK(check->replica == 0);
  CHECK(check->check_health_first);
  CHECK_FALSE(two.Pick(size_t{1}, t0 + std::chrono::seconds(2)).has_value());
  two.HealthChecked(0, true, t0 + std::chrono::seconds(2));
  two.Done(0, true, t0 + std::chrono::seconds(2));
  CHECK(two.up(0));
  auto back = two.Pick(size_t{1}, t0 + std::chrono::seconds(2));
  REQUIRE(back.has_value());
  CHECK_FALSE(back->check_health_first);
  CHECK(two.outstanding(0) == 1);
}

}  // namespace
}  // namespace sparta::serving_test
