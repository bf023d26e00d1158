#include "common/cluster_auth.h"

#include <chrono>
#include <vector>

#include <zmq.h>

#include "common/logging.h"

namespace sparta {
namespace {

constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
constexpr char kZapDomain[] = "sparta";

bool CurveOn(const ClusterConfig& cluster) { return cluster.auth == "curve"; }

}  // namespace

void SecureServerSocket(zmq::socket_t& socket, const ClusterConfig& cluster) {
  if (!CurveOn(cluster)) return;
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, cluster.curve_secret);
  // libzmq consults the context's ZAP handler for every CURVE handshake;
  // ZapAuthenticator::Start binds it before any socket binds, so no peer is
  // ever admitted without it (libzmq admits all when there is no handler).
  socket.set(zmq::sockopt::zap_domain, kZapDomain);
}

void SecureClientSocket(zmq::socket_t& socket, const ClusterConfig& cluster) {
  if (!CurveOn(cluster)) return;
  socket.set(zmq::sockopt::curve_serverkey, cluster.curve_public);
  socket.set(zmq::sockopt::curve_publickey, cluster.curve_public);
  socket.set(zmq::sockopt::curve_secretkey, cluster.curve_secret);
}

std::unique_ptr<ZapAuthenticator> ZapAuthenticator::Start(zmq::context_t* context, const ClusterConfig& cluster) {
  if (!CurveOn(cluster)) return nullptr;
  return std::unique_ptr<ZapAuthenticator>(new ZapAuthenticator(context, cluster.curve_public));
}

ZapAuthenticator::ZapAuthenticator(zmq::context_t* context, std::string cluster_public_z85)
    : socket_(*context, zmq::socket_type::rep) {
  allowed_key_.resize(32);
  zmq_z85_decode(reinterpret_cast<uint8_t*>(allowed_key_.data()), cluster_public_z85.c_str());
  socket_.set(zmq::sockopt::linger, 0);
  // Bound before this returns, so that no handshake can find the context
  // without a handler.
  socket_.bind(kZapEndpoint);
  thread_ = std::thread([this] { Run(); });
}

ZapAuthenticator::~ZapAuthenticator() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void ZapAuthenticator::Run() {
  auto last_warning = std::chrono::steady_clock::time_point();
  uint64_t unlogged = 0;
  while (!stop_.load()) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(100));
    if (!(item.revents & ZMQ_POLLIN)) continue;
    // ZAP/1.0 request: version, request id, domain, address, identity,
    // mechanism, credentials...
    std::vector<zmq::message_t> parts;
    while (true) {
      zmq::message_t part;
      if (!socket_.recv(part, zmq::recv_flags::none)) break;
      const bool more = part.more();
      parts.push_back(std::move(part));
      if (!more) break;
    }
    std::string request_id = parts.size() > 1 ? parts[1].to_string() : "";
    const std::string address = parts.size() > 3 ? parts[3].to_string() : "?";
    const std::string mechanism = parts.size() > 5 ? parts[5].to_string() : "";
    const bool ok = parts.size() >= 7 && parts[0].to_string() == "1.0" && mechanism == "CURVE" &&
                    parts[6].size() == 32 && parts[6].to_string() == allowed_key_;
    if (ok) {
      admitted_.fetch_add(1, std::memory_order_relaxed);
    } else {
      refused_.fetch_add(1, std::memory_order_relaxed);
      // At most one line a second: a flood of rogue handshakes must not flood the log.
      ++unlogged;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_warning >= std::chrono::seconds(1)) {
        spdlog::warn("refused a connection from {} ({}): not the cluster's key (cluster.auth: curve); {} refused since "
                     "the last warning",
                     address, mechanism.empty() ? "no mechanism" : mechanism, unlogged);
        last_warning = now;
        unlogged = 0;
      }
    }
    const char* code = ok ? "200" : "400";
    std::vector<std::string> reply = {"1.0", request_id, code, ok ? "OK" : "not a cluster key", ok ? "sparta" : "",
                                      ""};
    for (size_t i = 0; i < reply.size(); ++i) {
      zmq::message_t part(reply[i].data(), reply[i].size());
      socket_.send(part, i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  socket_.close();
}

}  // namespace sparta
