#include "ctl/control_client.h"

#include "absl/strings/str_cat.h"
#include "common/cluster_auth.h"
#include "common/message.h"
#include "common/socket_util.h"
#include "common/status_macros.h"

namespace sparta {

ControlClient::ControlClient(const ClusterConfig& cluster, std::chrono::milliseconds timeout)
    : cluster_(cluster), timeout_(timeout), context_(1), socket_(context_, zmq::socket_type::dealer) {}

absl::StatusOr<pb::Header> ControlClient::Call(pb::MsgType type) {
  pb::Header request;
  request.set_type(type);
  return Call(std::move(request));
}

absl::StatusOr<pb::Header> ControlClient::Call(pb::Header request) {
  if (!connected_) {
    ConfigureSocket(socket_);
    SecureClientSocket(socket_, cluster_);
    SPARTA_RETURN_IF_ERROR(ConnectToScheduler(socket_, cluster_.scheduler));
    connected_ = true;
  }
  // A DEALER queues until the connection is up (with standby schedulers,
  // until the leader's is: wait for it to take the message); the polls
  // below bound the wait.
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  bool sent = false;
  while (!sent) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLOUT, 0};
    zmq::poll(&item, 1, left);
    if (item.revents & ZMQ_POLLOUT) sent = SendMessage(socket_, request).ok();
  }
  while (sent) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, left);
    if (!(item.revents & ZMQ_POLLIN)) continue;
    auto got = ReceiveMessage(socket_, /*from_router=*/false);
    if (!got.ok()) return got.status();
    if (!got->has_value()) continue;
    return std::move((*got)->header);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no answer from the scheduler at ", cluster_.scheduler, " within ", timeout_.count() / 1000.0,
                   " s: is the job running there?",
                   cluster_.auth == "curve" ? " (cluster.auth is curve: is cluster.key_file the cluster's key?)" : ""));
}

absl::StatusOr<pb::ClusterStatus> ControlClient::Status() {
  auto reply = Call(pb::STATUS_REQUEST);
  if (!reply.ok()) return reply.status();
  if (reply->type() != pb::STATUS_REPLY) {
    return absl::InternalError(absl::StrCat("unexpected ", MsgTypeName(reply->type()), " from the scheduler"));
  }
  return reply->cluster_status();
}

namespace {
absl::Status ResponseStatus(const absl::StatusOr<pb::Header>& reply) {
  if (!reply.ok()) return reply.status();
  return absl::Status(static_cast<absl::StatusCode>(reply->status()), reply->error());
}
}  // namespace

absl::Status ControlClient::Checkpoint() { return ResponseStatus(Call(pb::CHECKPOINT_REQUEST)); }

absl::Status ControlClient::Stop() { return ResponseStatus(Call(pb::STOP_REQUEST)); }

absl::Status ControlClient::Drain(pb::Role role, int rank) {
  pb::Header request;
  request.set_type(pb::DRAIN_REQUEST);
  request.mutable_node()->set_role(role);
  request.mutable_node()->set_rank(rank);
  return ResponseStatus(Call(std::move(request)));
}

absl::StatusOr<ControlClient::ScaleAnswer> ControlClient::Scale(uint32_t servers) {
  pb::Header request;
  request.set_type(pb::SCALE_REQUEST);
  request.set_scale_servers(servers);
  auto reply = Call(std::move(request));
  if (auto st = ResponseStatus(reply); !st.ok()) return st;
  return ScaleAnswer{reply->error(), reply->scale_servers()};  // with status 0, `error` says what happens next
}

}  // namespace sparta
