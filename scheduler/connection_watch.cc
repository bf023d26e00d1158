#include "scheduler/connection_watch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sparta {

ConnectionWatch::ConnectionWatch(zmq::context_t* context, zmq::socket_t* socket)
    : context_(context), watched_(socket), monitor_(*context, zmq::socket_type::pair) {}

absl::Status ConnectionWatch::Start() {
  endpoint_ = absl::StrCat("inproc://sparta-connection-watch-", reinterpret_cast<uintptr_t>(this));
  if (zmq_socket_monitor(watched_->handle(), endpoint_.c_str(), ZMQ_EVENT_DISCONNECTED) != 0) {
    return absl::InternalError(absl::StrCat("socket monitor: ", zmq_strerror(zmq_errno())));
  }
  try {
    monitor_.connect(endpoint_);
  } catch (const zmq::error_t& e) {
    return absl::InternalError(absl::StrCat("socket monitor: ", e.what()));
  }
  return absl::OkStatus();
}

void ConnectionWatch::Seen(int fd, const std::string& routing_id) {
  if (fd >= 0) peer_by_fd_[fd] = routing_id;
}

zmq::pollitem_t ConnectionWatch::PollItem() { return {monitor_.handle(), 0, ZMQ_POLLIN, 0}; }

std::vector<std::string> ConnectionWatch::Closed() {
  std::vector<std::string> closed;
  while (true) {
    // Each event is two frames: 6 bytes (uint16 event, uint32 fd), then the
    // endpoint.
    zmq::message_t event, address;
    if (!monitor_.recv(event, zmq::recv_flags::dontwait)) break;
    if (event.more()) (void)monitor_.recv(address, zmq::recv_flags::none);
    if (event.size() < 6) continue;
    uint16_t type;
    uint32_t fd;
    std::memcpy(&type, event.data(), sizeof(type));
    std::memcpy(&fd, static_cast<const char*>(event.data()) + 2, sizeof(fd));
    spdlog::debug("connection watch: event {:#x} on fd {}", type, fd);
    auto it = peer_by_fd_.find(static_cast<int>(fd));
    if (type != ZMQ_EVENT_DISCONNECTED || it == peer_by_fd_.end()) continue;
    // The descriptor goes to the next connection; its first message says whose.
    closed.push_back(it->second);
    peer_by_fd_.erase(it);
  }
  return closed;
}

bool ConnectionWatch::IsOpen(const std::string& routing_id) const {
  for (const auto& [fd, peer] : peer_by_fd_) {
    if (peer == routing_id) return true;
  }
  return false;
}

ProbeResult ProbePort(const std::string& host, uint32_t port, int timeout_ms) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) {
    return ProbeResult::kNoAnswer;
  }
  ProbeResult result = ProbeResult::kNoAnswer;
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    if (connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
      result = ProbeResult::kListening;
    } else if (errno == ECONNREFUSED) {
      result = ProbeResult::kRefused;
    } else if (errno == EINPROGRESS) {
      pollfd p = {fd, POLLOUT, 0};
      if (poll(&p, 1, timeout_ms) == 1) {
        int error = 0;
        socklen_t len = sizeof(error);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        result = error == 0 ? ProbeResult::kListening : error == ECONNREFUSED ? ProbeResult::kRefused
                                                                              : ProbeResult::kNoAnswer;
      }
    }
    close(fd);
  }
  freeaddrinfo(found);
  return result;
}

}  // namespace sparta
