#include "ctl/predict_client.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json.h"

namespace sparta {

std::optional<ReplicaChooser::Choice> ReplicaChooser::Pick(std::optional<size_t> exclude, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<size_t> best, due;
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (exclude && *exclude == i) continue;
    const Replica& r = replicas_[i];
    if (r.up) {
      if (!best || r.outstanding < replicas_[*best].outstanding) best = i;
    } else if (now >= r.recheck_at && (!due || r.recheck_at < replicas_[*due].recheck_at)) {
      due = i;
    }
  }
  if (best) {
    ++replicas_[*best].outstanding;
    return Choice{.replica = *best};
  }
  if (due) {
    // One request checks it; the others do not pile onto it meanwhile.
    replicas_[*due].recheck_at = now + recheck_;
    ++replicas_[*due].outstanding;
    return Choice{.replica = *due, .check_health_first = true};
  }
  return std::nullopt;
}

void ReplicaChooser::Done(size_t replica, bool ok, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  Replica& r = replicas_[replica];
  --r.outstanding;
  if (!ok && r.up) {
    r.up = false;
    r.recheck_at = now + recheck_;
  }
}

void ReplicaChooser::HealthChecked(size_t replica, bool up, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  Replica& r = replicas_[replica];
  r.up = up;
  if (!up) r.recheck_at = now + recheck_;
}

int ReplicaChooser::outstanding(size_t replica) const {
  std::lock_guard<std::mutex> lock(mu_);
  return replicas_[replica].outstanding;
}

bool ReplicaChooser::up(size_t replica) const {
  std::lock_guard<std::mutex> lock(mu_);
  return replicas_[replica].up;
}

PredictClient::PredictClient(std::vector<std::string> urls, std::string model, ReplicaChooser::Clock::duration recheck)
    : path_(absl::StrCat("/v1/models/", model, ":predict")), urls_(std::move(urls)), chooser_(urls_.size(), recheck) {
  for (const std::string& url : urls_) {
    std::string hostport = url.rfind("http://", 0) == 0 ? url.substr(7) : url;
    if (!hostport.empty() && hostport.back() == '/') hostport.pop_back();
    const size_t colon = hostport.rfind(':');
    Target t{.host = hostport.substr(0, colon), .port = 80};
    if (colon != std::string::npos && !absl::SimpleAtoi(hostport.substr(colon + 1), &t.port)) t.port = -1;
    targets_.push_back(t);
  }
}

absl::StatusOr<PredictClient::Answer> PredictClient::Predict(const std::vector<std::string>& lines,
                                                             std::chrono::milliseconds deadline) {
  using Clock = ReplicaChooser::Clock;
  const Clock::time_point until = Clock::now() + deadline;
  std::vector<std::string> quoted;
  for (const std::string& line : lines) quoted.push_back(JsonQuote(line));
  const std::string body = absl::StrCat("{\"instances\": [", absl::StrJoin(quoted, ", "), "], \"deadline_ms\": ",
                                        deadline.count(), "}");
  std::optional<size_t> previous;
  std::string errors;
  Answer answer;
  // The first attempt, and one retry on another replica.
  for (int attempt = 0; attempt < 2 && Clock::now() < until; ++attempt) {
    auto choice = chooser_.Pick(previous, Clock::now());
    if (!choice) break;
    const size_t r = choice->replica;
    previous = r;
    ++answer.attempts;
    const auto left = std::max(std::chrono::microseconds(1000),
                               std::chrono::duration_cast<std::chrono::microseconds>(until - Clock::now()));
    httplib::Client client(targets_[r].host, targets_[r].port);
    client.set_tcp_nodelay(true);
    client.set_connection_timeout(std::chrono::duration_cast<std::chrono::seconds>(left).count(), left.count() % 1000000);
    client.set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(left).count(), left.count() % 1000000);
    if (choice->check_health_first) {
      auto health = client.Get("/healthz");
      const bool up = health && health->status == 200;
      chooser_.HealthChecked(r, up, Clock::now());
      if (!up) {
        chooser_.Done(r, false, Clock::now());
        absl::StrAppend(&errors, errors.empty() ? "" : "; ", urls_[r], ": still down");
        continue;
      }
    }
    auto res = client.Post(path_, body, "application/json");
    if (!res) {
      chooser_.Done(r, false, Clock::now());
      absl::StrAppend(&errors, errors.empty() ? "" : "; ", urls_[r], ": ", httplib::to_string(res.error()));
      continue;
    }
    if (res->status != 200) {
      const bool replica_fault = res->status >= 500;
      chooser_.Done(r, !replica_fault, Clock::now());
      const std::string what = absl::StrCat(urls_[r], ": HTTP ", res->status, " ", res->body);
      // A bad request is bad on every replica.
      if (!replica_fault) return absl::InvalidArgumentError(what);
      absl::StrAppend(&errors, errors.empty() ? "" : "; ", what);
      continue;
    }
    chooser_.Done(r, true, Clock::now());
    google::protobuf::Struct parsed;
    if (!google::protobuf::util::JsonStringToMessage(res->body, &parsed).ok() ||
        parsed.fields().count("predictions") == 0) {
      return absl::DataLossError(absl::StrCat(urls_[r], ": an answer that is not sparta-serve's: ", res->body));
    }
    for (const auto& v : parsed.fields().at("predictions").list_value().values()) {
      answer.predictions.push_back(v.number_value());
    }
    if (parsed.fields().count("model_version") > 0) {
      answer.model_version = static_cast<uint64_t>(parsed.fields().at("model_version").number_value());
    }
    if (answer.predictions.size() != lines.size()) {
      return absl::DataLossError(absl::StrCat(urls_[r], ": ", answer.predictions.size(), " predictions for ",
                                              lines.size(), " lines"));
    }
    return answer;
  }
  return absl::UnavailableError(absl::StrCat("no replica answered within ", deadline.count(), " ms (",
                                             errors.empty() ? "every replica is down" : errors, ")"));
}

}  // namespace sparta
