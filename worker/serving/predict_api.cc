#include "worker/serving/predict_api.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdio>
#include <future>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "worker/serving/instance_fields.h"

namespace sparta {
namespace {

namespace gp = google::protobuf;

}  // namespace

std::string ErrorBody(std::string_view message) { return absl::StrCat("{\"error\": ", JsonQuote(message), "}\n"); }

PredictApi::PredictApi(Options options, ReaderMaker make_reader, RequestBatcher* batcher,
                       std::function<uint64_t()> version)
    : options_(std::move(options)),
      make_reader_(std::move(make_reader)),
      batcher_(batcher),
      version_(std::move(version)) {}

absl::StatusOr<PredictApi::PooledReader> PredictApi::TakeReader() {
  std::unique_ptr<Reader> reader;
  {
    std::lock_guard<std::mutex> lock(readers_mu_);
    if (!idle_readers_.empty()) {
      reader = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    }
  }
  if (reader == nullptr) {
    auto made = make_reader_();
    if (!made.ok()) return made.status();
    reader = *std::move(made);
  }
  return PooledReader(reader.release(), [this](Reader* r) {
    std::lock_guard<std::mutex> lock(readers_mu_);
    idle_readers_.emplace_back(r);
  });
}

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

absl::Status PredictApi::UnknownModel(std::string_view model_name) const {
  return absl::NotFoundError(absl::StrCat("no model '", std::string(model_name), "' here; this server serves '",
                                          options_.model_name, "'"));
}

void PredictApi::Count(const PredictOutcome& outcome, Clock::time_point arrived) {
  if (!outcome.status.ok()) {
    (HttpStatusOf(outcome.status) < 500 ? rejected_ : failed_).fetch_add(1, std::memory_order_relaxed);
    return;
  }
  answered_.fetch_add(1, std::memory_order_relaxed);
  predicted_.fetch_add(outcome.probs.size(), std::memory_order_relaxed);
  latency_.Observe(std::chrono::duration<double>(Clock::now() - arrived).count());
}

void PredictApi::PredictRecords(std::string_view model_name, std::span<const std::string_view> records,
                                std::optional<double> deadline_ms, Clock::time_point arrived,
                                std::function<void(PredictOutcome)> done) {
  auto fail = [&](absl::Status status) {
    PredictOutcome outcome{.status = std::move(status)};
    Count(outcome, arrived);
    done(std::move(outcome));
  };
  if (model_name != options_.model_name) return fail(UnknownModel(model_name));
  if (version_() == 0) return fail(absl::UnavailableError("no model version is loaded yet"));
  if (records.empty()) return fail(absl::InvalidArgumentError("\"instances\" is empty"));
  auto deadline = arrived + std::chrono::duration_cast<Clock::duration>(options_.default_deadline);
  if (deadline_ms) {
    if (!(*deadline_ms > 0) || *deadline_ms > 3.6e6) {
      return fail(absl::InvalidArgumentError("\"deadline_ms\" must be a number of milliseconds in (0, 3600000]"));
    }
    deadline = std::min(deadline, arrived + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double, std::milli>(*deadline_ms)));
  }
  std::vector<Example> examples(records.size());
  {
    auto reader = TakeReader();
    if (!reader.ok()) return fail(absl::InternalError(reader.status().message()));
    std::string error;
    for (size_t i = 0; i < records.size(); ++i) {
      // A line as the worker reads it: without its newline.
      std::string_view record = records[i];
      while (!record.empty() && (record.back() == '\n' || record.back() == '\r')) record.remove_suffix(1);
      if (!(*reader)->Parse(record, &examples[i], &error)) {
        return fail(absl::InvalidArgumentError(absl::StrCat("instances[", i, "]: ", error)));
      }
    }
  }
  std::shared_lock<std::shared_mutex> taking(taking_mu_);
  if (!taking_) {
    taking.unlock();
    return fail(absl::UnavailableError("the server is shutting down"));
  }
  batcher_->Submit(std::move(examples), deadline,
                   [this, arrived, done = std::move(done)](absl::StatusOr<RequestBatcher::Scored> scored) {
                     PredictOutcome outcome;
                     if (scored.ok()) {
                       outcome.probs = std::move(scored->probs);
                       outcome.version = scored->version;
                     } else {
                       outcome.status = scored.status();
                     }
                     Count(outcome, arrived);
                     done(std::move(outcome));
                   });
}

HttpReply PredictApi::Predict(std::string_view model_name, std::string_view body) {
  const auto arrived = Clock::now();
  auto reject = [&](absl::Status status) {
    PredictOutcome outcome{.status = std::move(status)};
    Count(outcome, arrived);
    return HttpReply{.status = HttpStatusOf(outcome.status), .body = ErrorBody(std::string(outcome.status.message()))};
  };
  // Checked before the body is read: another model's request is not
  // judged by this one's format.
  if (model_name != options_.model_name) return reject(UnknownModel(model_name));
  gp::Struct request;
  if (auto st = gp::util::JsonStringToMessage(std::string(body), &request); !st.ok()) {
    return reject(absl::InvalidArgumentError(
        absl::StrCat("the body is not a JSON object: ", std::string(st.message()))));
  }
  const auto& fields = request.fields();
  for (const auto& [key, value] : fields) {
    if (key != "instances" && key != "deadline_ms") {
      return reject(absl::InvalidArgumentError(absl::StrCat(
          "unknown field '", key, "'; a request has \"instances\" and, optionally, \"deadline_ms\"")));
    }
  }
  auto instances = fields.find("instances");
  if (instances == fields.end() || !instances->second.has_list_value()) {
    return reject(absl::InvalidArgumentError(
        "the body has no \"instances\" list: send {\"instances\": [LINE or OBJECT, ...]}"));
  }
  std::optional<double> deadline_ms;
  if (auto d = fields.find("deadline_ms"); d != fields.end()) {
    // Not a number: NaN, which PredictRecords refuses with the rule.
    deadline_ms = d->second.has_number_value() ? d->second.number_value() : std::nan("");
  }
  const auto& list = instances->second.list_value().values();
  // Lines stay where the request holds them; objects become lines here.
  std::vector<std::string> made;
  made.reserve(list.size());
  std::vector<std::string_view> records;
  records.reserve(list.size());
  for (int i = 0; i < list.size(); ++i) {
    if (list[i].has_string_value()) {
      records.push_back(list[i].string_value());
    } else if (list[i].has_struct_value()) {
      auto line = InstanceFieldsToLine(options_.data_format, list[i].struct_value());
      if (!line.ok()) {
        return reject(absl::InvalidArgumentError(absl::StrCat("instances[", i, "]: ", line.status().message())));
      }
      made.push_back(*std::move(line));
      records.push_back(made.back());
    } else {
      return reject(absl::InvalidArgumentError(
          absl::StrCat("instances[", i, "] is neither a string nor an object: an instance is one input line in "
                       "the job's format (data.format or data.plugin), or an object of its named fields")));
    }
  }
  std::promise<PredictOutcome> answered;
  auto future = answered.get_future();
  PredictRecords(model_name, records, deadline_ms, arrived,
                 [&answered](PredictOutcome outcome) { answered.set_value(std::move(outcome)); });
  const PredictOutcome outcome = future.get();
  if (!outcome.status.ok()) {
    return HttpReply{.status = HttpStatusOf(outcome.status), .body = ErrorBody(std::string(outcome.status.message()))};
  }
  std::string out = "{\"predictions\": [";
  out.reserve(out.size() + outcome.probs.size() * 14 + 40);
  char number[32];
  for (size_t i = 0; i < outcome.probs.size(); ++i) {
    const int n = std::snprintf(number, sizeof(number), "%s%.9g", i == 0 ? "" : ", ", outcome.probs[i]);
    out.append(number, n);
  }
  absl::StrAppend(&out, "], \"model_version\": ", outcome.version, "}\n");
  return HttpReply{.status = 200, .body = std::move(out)};
}

void PredictApi::StopTaking() {
  std::unique_lock<std::shared_mutex> lock(taking_mu_);
  taking_ = false;
}

HttpReply PredictApi::ModelStatus(std::string_view model_name) const {
  if (model_name != options_.model_name) {
    return HttpReply{.status = 404, .body = ErrorBody(std::string(UnknownModel(model_name).message()))};
  }
  const uint64_t version = version_();
  return HttpReply{.status = 200,
                   .body = absl::StrCat("{\"model_version_status\": [{\"version\": \"", version,
                                        "\", \"state\": \"", version > 0 ? "AVAILABLE" : "LOADING",
                                        "\", \"status\": {\"error_code\": \"OK\", \"error_message\": \"\"}}]}\n")};
}

HttpReply PredictApi::Health() const { return HttpReply{.status = 200, .body = "{\"status\": \"ok\"}\n"}; }

HttpReply PredictApi::Ready() const {
  const uint64_t version = version_();
  if (version == 0) return HttpReply{.status = 503, .body = ErrorBody("no model version is loaded yet")};
  return HttpReply{.status = 200, .body = absl::StrCat("{\"status\": \"ready\", \"model_version\": ", version, "}\n")};
}

void PredictApi::WriteMetrics(MetricWriter& out) const {
  latency_.WriteTo(out, "sparta_serving_request_seconds",
                   "Predict requests answered, from arrival to reply (queueing, batching and the forward pass).");
  out.Counter("sparta_serving_requests_total", "Predict requests, by outcome.",
              static_cast<double>(answered_.load(std::memory_order_relaxed)), {{"outcome", "ok"}});
  out.Counter("sparta_serving_requests_total", "Predict requests, by outcome.",
              static_cast<double>(rejected_.load(std::memory_order_relaxed)), {{"outcome", "bad_request"}});
  out.Counter("sparta_serving_requests_total", "Predict requests, by outcome.",
              static_cast<double>(failed_.load(std::memory_order_relaxed)), {{"outcome", "error"}});
  out.Counter("sparta_serving_predictions_total", "Examples scored for answered requests.",
              static_cast<double>(predicted_.load(std::memory_order_relaxed)));
  out.Counter("sparta_serving_batches_total", "Batches the compute threads ran (dynamic batching).",
              static_cast<double>(batcher_->batches()));
  out.Counter("sparta_serving_batched_examples_total", "Examples in those batches.",
              static_cast<double>(batcher_->examples()));
  out.Gauge("sparta_serving_model_version", "The model version being served (0: none loaded).",
            static_cast<double>(version_()));
}

}  // namespace sparta
