#include "worker/serving/zmq_predict_endpoint.h"

#include <deque>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/socket_util.h"
#include "common/status_macros.h"

namespace sparta {

pb::Header PredictReplyHeader(const PredictOutcome& outcome, uint64_t seq) {
  pb::Header h;
  h.set_type(pb::RESPONSE);
  h.set_seq(seq);
  h.set_status(static_cast<int32_t>(outcome.status.code()));
  if (!outcome.status.ok()) {
    h.set_error(std::string(outcome.status.message()));
    return h;
  }
  h.set_model_version(outcome.version);
  h.set_num_keys(static_cast<uint32_t>(outcome.probs.size()));
  h.set_dim(1);
  h.set_dtype(pb::FP32);
  return h;
}

ZmqPredictEndpoint::ZmqPredictEndpoint(PredictApi* api, std::function<uint64_t()> version)
    : api_(api), version_(std::move(version)), socket_(context_, zmq::socket_type::router) {}

absl::StatusOr<std::unique_ptr<ZmqPredictEndpoint>> ZmqPredictEndpoint::Start(const Config& config, PredictApi* api,
                                                                             std::function<uint64_t()> version) {
  std::unique_ptr<ZmqPredictEndpoint> endpoint(new ZmqPredictEndpoint(api, std::move(version)));
  endpoint->zap_ = ZapAuthenticator::Start(&endpoint->context_, config.cluster);
  ConfigureSocket(endpoint->socket_);
  SecureServerSocket(endpoint->socket_, config.cluster);
  auto port = BindTcp(endpoint->socket_, config.cluster.host, static_cast<uint32_t>(config.serving.zmq_port));
  if (!port.ok()) {
    return absl::UnavailableError(absl::StrCat(config.Where("serving.zmq_port"), ": key 'serving.zmq_port': ",
                                               port.status().message()));
  }
  endpoint->port_ = *port;
  endpoint->thread_ = std::thread([e = endpoint.get()] { e->Run(); });
  return endpoint;
}

ZmqPredictEndpoint::~ZmqPredictEndpoint() {
  stop_.store(true);
  replies_.Wake();
  if (thread_.joinable()) thread_.join();
  socket_.close();
  zap_.reset();  // before its context
}

void ZmqPredictEndpoint::Send(Reply reply) {
  std::vector<zmq::message_t> frames;
  if (reply.header.status() == 0 && reply.header.type() == pb::RESPONSE && reply.header.dim() == 1) {
    frames.push_back(FrameFromVector(std::move(reply.probs)));
  }
  const zmq::message_t routing_id(reply.routing_id.data(), reply.routing_id.size());
  // A client gone, or one that reads no answers, loses its answer; the
  // endpoint goes on.
  if (auto st = SendMessage(socket_, reply.header, &frames, &routing_id); !st.ok()) {
    spdlog::debug("predict answer not sent: {}", std::string(st.message()));
  }
}

void ZmqPredictEndpoint::Handle(Message request) {
  std::string routing_id(static_cast<const char*>(request.routing_id->data()), request.routing_id->size());
  const uint64_t seq = request.header.seq();
  if (request.header.type() == pb::HEARTBEAT) {
    pb::Header h;
    h.set_type(pb::RESPONSE);
    h.set_seq(seq);
    h.set_model_version(version_());
    Send(Reply{.routing_id = std::move(routing_id), .header = std::move(h)});
    return;
  }
  if (request.header.type() != pb::PREDICT) {
    malformed_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("dropped a {} on the predict endpoint: it answers PREDICT and HEARTBEAT",
                 MsgTypeName(request.header.type()));
    return;
  }
  auto records = PredictRecordsOf(request);
  auto answer = [this, routing_id = std::move(routing_id), seq](PredictOutcome outcome) mutable {
    replies_.Post(Reply{.routing_id = std::move(routing_id),
                        .header = PredictReplyHeader(outcome, seq),
                        .probs = std::move(outcome.probs)});
  };
  if (!records.ok()) {
    answer(PredictOutcome{.status = records.status()});
    return;
  }
  const double deadline_ms = request.header.deadline_ms();
  api_->PredictRecords(request.header.model(), *records,
                       deadline_ms == 0 ? std::nullopt : std::optional<double>(deadline_ms),
                       PredictApi::Clock::now(), std::move(answer));
}

void ZmqPredictEndpoint::Run() {
  zmq::pollitem_t items[] = {{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0},
                             {nullptr, replies_.fd(), ZMQ_POLLIN, 0}};
  std::deque<Reply> ready;
  while (!stop_.load()) {
    zmq::poll(items, 2, std::chrono::milliseconds(-1));
    if (items[1].revents & ZMQ_POLLIN) {
      replies_.Drain(&ready);
      for (; !ready.empty(); ready.pop_front()) Send(std::move(ready.front()));
    }
    if (items[0].revents & ZMQ_POLLIN) {
      // A burst is read whole, but not forever: answers go out between.
      for (int i = 0; i < 256; ++i) {
        auto got = ReceiveMessage(socket_, /*from_router=*/true);
        if (!got.ok()) {
          malformed_.fetch_add(1, std::memory_order_relaxed);
          spdlog::warn("dropped a malformed message on the predict endpoint: {}", std::string(got.status().message()));
          continue;
        }
        if (!got->has_value()) break;
        Handle(std::move(**got));
      }
    }
  }
}

}  // namespace sparta
