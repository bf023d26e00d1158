#include "server/server.h"

#include <unistd.h>

#include <bit>

#include "common/logging.h"

#include "absl/strings/str_cat.h"
#include "common/daemon_options.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/scheduler_client.h"
#include "common/socket_util.h"

namespace sparta {

// A pull's reply is allocated before it is filled; bound it so that no
// request can make the server allocate without limit.
constexpr uint64_t kMaxReplyBytes = uint64_t{1} << 30;

Server::Server(const Config& config, int rank, std::string info_file)
    : config_(config),
      requested_rank_(rank),
      info_file_(std::move(info_file)),
      context_(1),
      socket_(context_, zmq::socket_type::router) {}

Server::~Server() {
  for (auto& e : executors_) e->Stop();
}

absl::Status Server::Run() {
  ConfigureSocket(socket_);
  socket_.set(zmq::sockopt::router_mandatory, 1);
  auto port = BindTcp(socket_, config_.cluster.host, 0);
  if (!port.ok()) return port.status();

  pb::NodeInfo self;
  self.set_role(pb::SERVER);
  self.set_rank(requested_rank_);
  self.set_host(config_.cluster.host);
  self.set_data_port(*port);
  self.set_pid(getpid());
  SchedulerClient* client_ptr = nullptr;
  SchedulerClient client(&context_, config_, self,
                         {.on_flush = [&] { client_ptr->SendFlushDone(Stats()); },
                          .on_end = [&](const absl::Status&) { done_.Wake(); }});
  client_ptr = &client;
  if (auto st = client.Register(); !st.ok()) return st;
  rank_ = client.self().rank();
  SetLogProcessName(absl::StrCat("server-", rank_));
  WriteInfoFile(info_file_, client.self());
  spdlog::info("serving on {}:{} as id {}", config_.cluster.host, *port, client.self().id());

  auto view = client.WaitForView();
  if (!view.ok()) return view.status();
  epoch_ = view->epoch();
  shard_owner_.assign(view->shard_owner().begin(), view->shard_owner().end());
  shard_bits_ = std::bit_width(shard_owner_.size()) - 1;
  const int threads = config_.server.threads;
  const uint32_t local_shards = (shard_owner_.size() + threads - 1) / threads;
  for (int e = 0; e < threads; ++e) {
    executors_.push_back(std::make_unique<ShardExecutor>(e, local_shards, &done_));
    executors_.back()->Start();
  }
  int owned = 0;
  for (uint32_t owner : shard_owner_) owned += owner == static_cast<uint32_t>(rank_);
  spdlog::info("cluster view epoch {}: this server owns {} of {} shards; {} executor threads", epoch_, owned,
               shard_owner_.size(), threads);

  std::deque<std::shared_ptr<Request>> finished;
  while (!client.ended()) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, done_.fd(), ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, std::chrono::milliseconds(200));
    if (items[1].revents & ZMQ_POLLIN) {
      done_.Drain(&finished);
      for (auto& r : finished) Answer(r);
      finished.clear();
    }
    // Bounded so that replies are not starved by a flood of requests.
    for (int i = 0; i < 256; ++i) {
      auto got = ReceiveMessage(socket_, /*from_router=*/true);
      if (!got.ok()) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("dropped a message: {}", got.status().message());
        continue;
      }
      if (!got->has_value()) break;
      HandleRequest(std::move(**got));
    }
  }
  for (auto& e : executors_) e->Stop();
  const pb::ServerStats stats = Stats();
  spdlog::info("stopping: {} rows, {} pulls, {} pushes, {} malformed messages dropped", stats.rows(),
               stats.pull_requests(), stats.push_requests(), stats.dropped_messages());
  return client.WaitForEnd();
}

void Server::HandleRequest(Message message) {
  const pb::Header& h = message.header;
  switch (h.type()) {
    case pb::CREATE_TABLE: {
      absl::Status st = tables_.Create(h.table_spec());
      if (st.ok()) spdlog::debug("table {} '{}' ready", h.table_spec().id(), h.table_spec().name());
      return Reply(message, st);
    }
    case pb::PULL:
    case pb::PUSH:
      break;
    default:
      dropped_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("dropped unexpected {} from sender {}", MsgTypeName(h.type()), h.sender());
      return;
  }
  if (h.epoch() != epoch_) {
    // A stale sender gets told, with the current epoch in the reply, instead of silence.
    return Reply(message, absl::FailedPreconditionError(
                              absl::StrCat("request of epoch ", h.epoch(), "; the cluster is at epoch ", epoch_)));
  }
  const TableEntry* table = tables_.Find(h.table());
  if (table == nullptr) return Reply(message, absl::NotFoundError(absl::StrCat("no table ", h.table())));
  if (h.type() == pb::PUSH && h.dim() != table->spec.dim()) {
    return Reply(message, absl::InvalidArgumentError(absl::StrCat("push of dim ", h.dim(), " to table '",
                                                                  table->spec.name(), "' of dim ",
                                                                  table->spec.dim())));
  }
  if (h.type() == pb::PUSH && duplicates_.SeenBefore(h.sender(), h.seq())) {
    spdlog::debug("push {} from sender {} already applied; acknowledging again", h.seq(), h.sender());
    return Reply(message, absl::OkStatus());
  }
  if (h.type() == pb::PULL && uint64_t{h.num_keys()} * table->spec.dim() * ValueBytes(h.dtype()) > kMaxReplyBytes) {
    return Reply(message, absl::ResourceExhaustedError(absl::StrCat("a pull of ", h.num_keys(), " rows of dim ",
                                                                    table->spec.dim(), " exceeds the reply limit")));
  }
  auto request = std::make_shared<Request>();
  request->table = table;
  request->message = std::move(message);
  const Message& m = request->message;
  request->keys = FrameView<uint64_t>(m.frames[0], &request->key_scratch);
  request->dtype = m.header.dtype();
  const size_t floats = request->keys.size() * size_t{table->spec.dim()};
  if (m.header.type() == pb::PUSH) {
    if (request->dtype == pb::FP16) {
      request->grads_half = FrameView<uint16_t>(m.frames[1], &request->half_scratch);
    } else {
      request->grads = FrameView<float>(m.frames[1], &request->grad_scratch);
    }
  } else if (request->dtype == pb::FP16) {
    request->half_values.resize(floats);
  } else {
    request->values.resize(floats);
  }
  Route(std::move(request));
}

void Server::Route(std::shared_ptr<Request> request) {
  const size_t threads = executors_.size();
  std::vector<ShardTask> tasks(threads);
  const auto keys = request->keys;
  for (uint32_t pos = 0; pos < keys.size(); ++pos) {
    const uint32_t shard = ShardOf(keys[pos], shard_bits_);
    if (shard_owner_[shard] != static_cast<uint32_t>(rank_)) {
      return Reply(request->message,
                   absl::FailedPreconditionError(absl::StrCat("key ", keys[pos], " is in shard ", shard,
                                                              ", which server ", shard_owner_[shard], " owns")));
    }
    ShardTask& task = tasks[shard % threads];
    task.positions.push_back(pos);
    task.local_shards.push_back(shard / threads);
  }
  int busy = 0;
  for (const ShardTask& t : tasks) busy += !t.positions.empty();
  if (busy == 0) return Answer(request);
  request->pending.store(busy, std::memory_order_relaxed);
  for (size_t e = 0; e < threads; ++e) {
    if (tasks[e].positions.empty()) continue;
    tasks[e].request = request;
    executors_[e]->Submit(std::move(tasks[e]));
  }
}

void Server::Answer(const std::shared_ptr<Request>& request) {
  if (request->message.header.type() == pb::PULL) {
    pulls_.fetch_add(1, std::memory_order_relaxed);
    if (request->dtype == pb::FP16) {
      Reply(request->message, absl::OkStatus(), nullptr, request->table->spec.dim(), &request->half_values);
    } else {
      Reply(request->message, absl::OkStatus(), &request->values, request->table->spec.dim());
    }
  } else {
    pushes_.fetch_add(1, std::memory_order_relaxed);
    Reply(request->message, absl::OkStatus());
  }
}

void Server::Reply(const Message& request, absl::Status status, std::vector<float>* values, uint32_t dim,
                   std::vector<uint16_t>* half_values) {
  pb::Header h;
  h.set_type(pb::RESPONSE);
  h.set_seq(request.header.seq());
  h.set_epoch(epoch_);
  h.set_table(request.header.table());
  h.set_status(static_cast<int32_t>(status.code()));
  if (!status.ok()) {
    h.set_error(std::string(status.message()));
    spdlog::debug("request {} from sender {} failed: {}", request.header.seq(), request.header.sender(),
                  status.message());
  }
  std::vector<zmq::message_t> frames;
  if (values != nullptr) {
    h.set_num_keys(static_cast<uint32_t>(values->size() / std::max<uint32_t>(dim, 1)));
    h.set_dim(dim);
    frames.push_back(FrameFromVector(std::move(*values)));
  } else if (half_values != nullptr) {
    h.set_num_keys(static_cast<uint32_t>(half_values->size() / std::max<uint32_t>(dim, 1)));
    h.set_dim(dim);
    h.set_dtype(pb::FP16);
    frames.push_back(FrameFromVector(std::move(*half_values)));
  }
  if (auto st = SendMessage(socket_, h, &frames, &*request.routing_id); !st.ok()) {
    spdlog::debug("reply to sender {} not sent: {}", request.header.sender(), st.message());
  }
}

pb::ServerStats Server::Stats() const {
  pb::ServerStats s;
  uint64_t rows = 0;
  for (const auto& e : executors_) rows += e->rows();
  s.set_rows(rows);
  s.set_pull_requests(pulls_.load());
  s.set_push_requests(pushes_.load());
  s.set_dropped_messages(dropped_.load());
  return s;
}

}  // namespace sparta
