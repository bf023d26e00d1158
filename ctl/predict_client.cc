#include "ctl/predict_client.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cluster_auth.h"
#include "common/curve_keys.h"
#include "common/json.h"
#include "common/message.h"
#include "common/predict_message.h"
#include "common/socket_util.h"
#include "common/status_macros.h"

namespace sparta {

std::optional<ReplicaChooser::Choice> ReplicaChooser::Pick(std::optional<size_t> exclude, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<size_t> best, due;
  // Ties go round: the scan starts one replica further each time, so that a
  // client with one request at a time (and many such clients) spreads its
  // requests instead of sending every one to the first replica.
  const size_t start = next_start_++;
  for (size_t k = 0; k < replicas_.size(); ++k) {
    const size_t i = (start + k) % replicas_.size();
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

absl::StatusOr<ClusterConfig> ClientClusterConfig(const std::string& key_file) {
  ClusterConfig cluster;
  if (key_file.empty()) return cluster;
  auto keys = ReadCurveKeyFile(key_file);
  if (!keys.ok()) return keys.status();
  cluster.auth = "curve";
  cluster.key_file = key_file;
  cluster.curve_public = keys->public_key;
  cluster.curve_secret = keys->secret_key;
  return cluster;
}

PredictClient::PredictClient(std::vector<std::string> urls, std::string model, ReplicaChooser::Clock::duration recheck,
                             ClusterConfig cluster)
    : model_(model),
      path_(absl::StrCat("/v1/models/", model, ":predict")),
      urls_(std::move(urls)),
      chooser_(urls_.size(), recheck),
      cluster_(std::move(cluster)),
      idle_sockets_(urls_.size()) {
  for (const std::string& url : urls_) {
    // A malformed URL (CheckUrl) is kept as a replica that never answers.
    auto target = ParseTarget(url);
    targets_.push_back(target.ok() ? *std::move(target) : Target{.port = -1});
  }
}

absl::StatusOr<PredictClient::Target> PredictClient::ParseTarget(const std::string& url) {
  Target t;
  std::string hostport = url;
  if (url.rfind("tcp://", 0) == 0) {
    t.zmq = true;
    hostport = url.substr(6);
  } else if (url.rfind("http://", 0) == 0) {
    hostport = url.substr(7);
  }
  if (!hostport.empty() && hostport.back() == '/') hostport.pop_back();
  const size_t colon = hostport.rfind(':');
  t.host = hostport.substr(0, colon);
  t.port = t.zmq ? 8502 : 80;
  if (hostport.find("://") != std::string::npos || t.host.empty() ||
      (colon != std::string::npos &&
       (!absl::SimpleAtoi(hostport.substr(colon + 1), &t.port) || t.port <= 0 || t.port > 65535))) {
    return absl::InvalidArgumentError(
        absl::StrCat(url, ": a replica is http://HOST:PORT or tcp://HOST:PORT (ZeroMQ), with a port in [1, 65535]"));
  }
  t.endpoint = absl::StrCat("tcp://", t.host, ":", t.port);
  return t;
}

absl::Status PredictClient::CheckUrl(const std::string& url) { return ParseTarget(url).status(); }

PredictClient::~PredictClient() {
  // Sockets before their context.
  std::lock_guard<std::mutex> lock(sockets_mu_);
  idle_sockets_.clear();
}

std::unique_ptr<zmq::socket_t> PredictClient::TakeSocket(size_t r) {
  {
    std::lock_guard<std::mutex> lock(sockets_mu_);
    if (!idle_sockets_[r].empty()) {
      auto socket = std::move(idle_sockets_[r].back());
      idle_sockets_[r].pop_back();
      return socket;
    }
  }
  auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
  ConfigureSocket(*socket);
  SecureClientSocket(*socket, cluster_);
  // Requests go only to a connection that is up: to a dead replica a send
  // fails at once rather than waiting in a queue for a reconnect.
  socket->set(zmq::sockopt::immediate, 1);
  socket->connect(targets_[r].endpoint);
  return socket;
}

void PredictClient::GiveBack(size_t r, std::unique_ptr<zmq::socket_t> socket) {
  std::lock_guard<std::mutex> lock(sockets_mu_);
  idle_sockets_[r].push_back(std::move(socket));
}

PredictClient::Attempt PredictClient::CallHttp(size_t r, const std::string& body, bool check_health,
                                               std::chrono::microseconds left) {
  Attempt attempt;
  httplib::Client client(targets_[r].host, targets_[r].port);
  client.set_tcp_nodelay(true);
  client.set_connection_timeout(std::chrono::duration_cast<std::chrono::seconds>(left).count(), left.count() % 1000000);
  client.set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(left).count(), left.count() % 1000000);
  if (check_health) {
    auto health = client.Get("/healthz");
    if (!health || health->status != 200) {
      attempt.error = "still down";
      attempt.health_failed = true;
      return attempt;
    }
  }
  auto res = client.Post(path_, body, "application/json");
  if (!res) {
    attempt.error = httplib::to_string(res.error());
    return attempt;
  }
  if (res->status != 200) {
    // A bad request is bad on every replica.
    if (res->status < 500) attempt.outcome = Attempt::kBadRequest;
    attempt.error = absl::StrCat("HTTP ", res->status, " ", res->body);
    return attempt;
  }
  google::protobuf::Struct parsed;
  if (!google::protobuf::util::JsonStringToMessage(res->body, &parsed).ok() ||
      parsed.fields().count("predictions") == 0) {
    attempt.outcome = Attempt::kBadRequest;
    attempt.error = absl::StrCat("an answer that is not sparta-serve's: ", res->body);
    return attempt;
  }
  for (const auto& v : parsed.fields().at("predictions").list_value().values()) {
    attempt.answer.predictions.push_back(v.number_value());
  }
  if (parsed.fields().count("model_version") > 0) {
    attempt.answer.model_version = static_cast<uint64_t>(parsed.fields().at("model_version").number_value());
  }
  attempt.outcome = Attempt::kAnswered;
  return attempt;
}

PredictClient::Attempt PredictClient::CallZmq(size_t r, const std::vector<std::string>& lines, bool check_health,
                                              std::chrono::microseconds left) {
  using Clock = ReplicaChooser::Clock;
  const Clock::time_point until = Clock::now() + left;
  Attempt attempt;
  std::unique_ptr<zmq::socket_t> socket = TakeSocket(r);
  {
    // A new socket connects first, within the attempt's time: a live
    // replica just started, or on a loaded machine, may take hundreds of
    // milliseconds to accept (a dead one never does, and the retry has its
    // own time). One still connecting is given back: nothing was sent on
    // it, so no late answer can come, and it connects in the background
    // for the next request.
    zmq::pollitem_t item{static_cast<void*>(*socket), 0, ZMQ_POLLOUT, 0};
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(left);
    if (zmq::poll(&item, 1, std::max(wait, std::chrono::milliseconds(1))) == 0) {
      attempt.error = absl::StrCat("no connection to ", targets_[r].endpoint);
      attempt.health_failed = check_health;
      GiveBack(r, std::move(socket));
      return attempt;
    }
  }
  // Sends `header` (+ `frames`), numbered, and waits for the RESPONSE that
  // echoes its seq.
  auto exchange = [&](pb::Header header, std::vector<zmq::message_t> frames) -> absl::StatusOr<Message> {
    const uint64_t seq = seq_.fetch_add(1) + 1;
    header.set_seq(seq);
    SPARTA_RETURN_IF_ERROR(SendMessage(*socket, header, &frames));
    return AwaitResponse(*socket, seq, until);
  };
  if (check_health) {
    pb::Header ping;
    ping.set_type(pb::HEARTBEAT);
    auto pong = exchange(std::move(ping), {});
    if (!pong.ok()) {
      attempt.error = "still down";
      attempt.health_failed = true;
      return attempt;  // the socket is dropped with its late answers
    }
  }
  PredictRequest request = MakePredictRequest(
      model_, lines, std::max(1.0, std::chrono::duration<double, std::milli>(left).count()), /*seq=*/0);
  std::vector<zmq::message_t> frames;
  frames.emplace_back(request.frame.data(), request.frame.size());
  auto reply = exchange(std::move(request.header), std::move(frames));
  if (!reply.ok()) {
    attempt.error = std::string(reply.status().message());
    return attempt;
  }
  const pb::Header& h = reply->header;
  if (h.status() != 0) {
    const absl::Status status(static_cast<absl::StatusCode>(h.status()), h.error());
    if (status.code() == absl::StatusCode::kInvalidArgument || status.code() == absl::StatusCode::kNotFound) {
      attempt.outcome = Attempt::kBadRequest;
    }
    attempt.error = status.ToString();
    GiveBack(r, std::move(socket));
    return attempt;
  }
  if (reply->frames.size() != 1 || h.dtype() != pb::FP32 || h.dim() != 1) {
    attempt.outcome = Attempt::kBadRequest;
    attempt.error = "an answer without its predictions";
    return attempt;
  }
  std::vector<float> scratch;
  for (float p : FrameView<float>(reply->frames[0], &scratch)) attempt.answer.predictions.push_back(p);
  attempt.answer.model_version = h.model_version();
  attempt.outcome = Attempt::kAnswered;
  GiveBack(r, std::move(socket));
  return attempt;
}

absl::StatusOr<PredictClient::Answer> PredictClient::Predict(const std::vector<std::string>& lines,
                                                             std::chrono::milliseconds deadline) {
  using Clock = ReplicaChooser::Clock;
  const Clock::time_point until = Clock::now() + deadline;
  std::string body;  // made once, for the replicas that speak HTTP
  std::optional<size_t> previous;
  std::string errors;
  int attempts = 0;
  // The first attempt, and one retry on another replica.
  for (int attempt = 0; attempt < 2 && Clock::now() < until; ++attempt) {
    auto choice = chooser_.Pick(previous, Clock::now());
    if (!choice) break;
    const size_t r = choice->replica;
    previous = r;
    ++attempts;
    auto left = std::max(std::chrono::microseconds(1000),
                         std::chrono::duration_cast<std::chrono::microseconds>(until - Clock::now()));
    // A ZeroMQ client does not see a replica die under its request (HTTP
    // sees its connection close): the first try gets half the time, so
    // that the retry has the other half.
    if (targets_[r].zmq && attempt == 0 && urls_.size() > 1) left /= 2;
    if (!targets_[r].zmq && body.empty()) {
      std::vector<std::string> quoted;
      for (const std::string& line : lines) quoted.push_back(JsonQuote(line));
      body = absl::StrCat("{\"instances\": [", absl::StrJoin(quoted, ", "), "], \"deadline_ms\": ",
                          deadline.count(), "}");
    }
    Attempt result = targets_[r].zmq ? CallZmq(r, lines, choice->check_health_first, left)
                                     : CallHttp(r, body, choice->check_health_first, left);
    if (choice->check_health_first) chooser_.HealthChecked(r, !result.health_failed, Clock::now());
    chooser_.Done(r, result.outcome != Attempt::kReplicaFailed, Clock::now());
    if (result.outcome == Attempt::kBadRequest) {
      return absl::InvalidArgumentError(absl::StrCat(urls_[r], ": ", result.error));
    }
    if (result.outcome == Attempt::kReplicaFailed) {
      absl::StrAppend(&errors, errors.empty() ? "" : "; ", urls_[r], ": ", result.error);
      continue;
    }
    Answer answer = std::move(result.answer);
    answer.attempts = attempts;
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
