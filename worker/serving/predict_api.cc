#include "worker/serving/predict_api.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/json.h"

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

HttpReply PredictApi::Error(int status, std::string_view message) {
  (status < 500 ? rejected_ : failed_).fetch_add(1, std::memory_order_relaxed);
  return HttpReply{.status = status, .body = ErrorBody(message)};
}

HttpReply PredictApi::UnknownModel(std::string_view model_name) const {
  return HttpReply{.status = 404,
                   .body = ErrorBody(absl::StrCat("no model '", std::string(model_name), "' here; this server serves '",
                                                  options_.model_name, "'"))};
}

HttpReply PredictApi::Predict(std::string_view model_name, std::string_view body) {
  const auto arrived = RequestBatcher::Clock::now();
  if (model_name != options_.model_name) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return UnknownModel(model_name);
  }
  if (version_() == 0) return Error(503, "no model version is loaded yet");
  gp::Struct request;
  if (auto st = gp::util::JsonStringToMessage(std::string(body), &request); !st.ok()) {
    return Error(400, absl::StrCat("the body is not a JSON object: ", std::string(st.message())));
  }
  const auto& fields = request.fields();
  for (const auto& [key, value] : fields) {
    if (key != "instances" && key != "deadline_ms") {
      return Error(400, absl::StrCat("unknown field '", key, "'; a request has \"instances\" and, optionally, "
                                     "\"deadline_ms\""));
    }
  }
  auto instances = fields.find("instances");
  if (instances == fields.end() || !instances->second.has_list_value()) {
    return Error(400, "the body has no \"instances\" list: send {\"instances\": [LINE, ...]}");
  }
  const auto& list = instances->second.list_value().values();
  if (list.empty()) return Error(400, "\"instances\" is empty");
  auto deadline = arrived + std::chrono::duration_cast<RequestBatcher::Clock::duration>(options_.default_deadline);
  if (auto d = fields.find("deadline_ms"); d != fields.end()) {
    if (!d->second.has_number_value() || !(d->second.number_value() > 0) || d->second.number_value() > 3.6e6) {
      return Error(400, "\"deadline_ms\" must be a number of milliseconds in (0, 3600000]");
    }
    deadline = std::min(deadline, arrived + std::chrono::duration_cast<RequestBatcher::Clock::duration>(
                                                std::chrono::duration<double, std::milli>(d->second.number_value())));
  }
  std::vector<Example> examples(list.size());
  {
    auto reader = TakeReader();
    if (!reader.ok()) return Error(500, std::string(reader.status().message()));
    std::string error;
    for (int i = 0; i < list.size(); ++i) {
      if (!list[i].has_string_value()) {
        return Error(400, absl::StrCat("instances[", i, "] is not a string: an instance is one input line in the "
                                       "job's format (data.format or data.plugin)"));
      }
      const std::string& line = list[i].string_value();
      // A line as the worker reads it: without its newline.
      std::string_view record(line);
      while (!record.empty() && (record.back() == '\n' || record.back() == '\r')) record.remove_suffix(1);
      if (!(*reader)->Parse(record, &examples[i], &error)) {
        return Error(400, absl::StrCat("instances[", i, "]: ", error));
      }
    }
  }
  absl::StatusOr<RequestBatcher::Scored> scored = batcher_->Submit(std::move(examples), deadline).get();
  if (!scored.ok()) {
    const int status = absl::IsDeadlineExceeded(scored.status()) ? 504
                       : absl::IsUnavailable(scored.status())    ? 503
                                                                 : 500;
    return Error(status, std::string(scored.status().message()));
  }
  std::string out = "{\"predictions\": [";
  out.reserve(out.size() + scored->probs.size() * 14 + 40);
  char number[32];
  for (size_t i = 0; i < scored->probs.size(); ++i) {
    const int n = std::snprintf(number, sizeof(number), "%s%.9g", i == 0 ? "" : ", ", scored->probs[i]);
    out.append(number, n);
  }
  absl::StrAppend(&out, "], \"model_version\": ", scored->version, "}\n");
  answered_.fetch_add(1, std::memory_order_relaxed);
  predicted_.fetch_add(scored->probs.size(), std::memory_order_relaxed);
  latency_.Observe(std::chrono::duration<double>(RequestBatcher::Clock::now() - arrived).count());
  return HttpReply{.status = 200, .body = std::move(out)};
}

HttpReply PredictApi::ModelStatus(std::string_view model_name) const {
  if (model_name != options_.model_name) return UnknownModel(model_name);
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
