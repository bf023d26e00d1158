#include "common/socket_util.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/message.h"

namespace sparta {

std::string TcpEndpoint(const std::string& host_port) { return "tcp://" + host_port; }

std::string TcpEndpoint(const std::string& host, uint32_t port) {
  return absl::StrCat("tcp://", host, ":", port);
}

absl::Status SplitHostPort(const std::string& host_port, std::string* host, uint32_t* port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("expected host:port, got '", host_port, "'"));
  }
  const char* begin = host_port.data() + colon + 1;
  const char* end = host_port.data() + host_port.size();
  auto [ptr, ec] = std::from_chars(begin, end, *port);
  if (ec != std::errc() || ptr != end || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", host_port, "'"));
  }
  *host = host_port.substr(0, colon);
  return absl::OkStatus();
}

absl::Status ConnectToScheduler(zmq::socket_t& socket, const std::string& addresses) {
  std::vector<std::string> list = absl::StrSplit(addresses, ',', absl::SkipWhitespace());
  if (list.empty()) return absl::InvalidArgumentError("no scheduler address");
  // One scheduler: messages queue while it restarts, as they always have.
  if (list.size() > 1) socket.set(zmq::sockopt::immediate, 1);
  for (std::string& address : list) {
    address = std::string(absl::StripAsciiWhitespace(address));
    try {
      socket.connect(TcpEndpoint(address));
    } catch (const zmq::error_t& e) {
      return absl::InvalidArgumentError(absl::StrCat("cannot connect to the scheduler at ", address, ": ", e.what()));
    }
  }
  return absl::OkStatus();
}

void ConfigureSocket(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::linger, kCloseLingerMs);
  socket.set(zmq::sockopt::maxmsgsize, kMaxFrameBytes);
  socket.set(zmq::sockopt::sndhwm, 100000);
  socket.set(zmq::sockopt::rcvhwm, 100000);
  // Requests are megabytes: large kernel buffers mean fewer, larger
  // send/recv calls, each taking the socket lock once.
  socket.set(zmq::sockopt::sndbuf, 4 << 20);
  socket.set(zmq::sockopt::rcvbuf, 4 << 20);
}

namespace {

// The first address `host` resolves to (IPv4 first), numeric; "" if none.
std::string ResolveHost(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) return "";
  std::string ipv4, ipv6;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {0};
    if (a->ai_family == AF_INET && ipv4.empty()) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr, text, sizeof(text));
      ipv4 = text;
    } else if (a->ai_family == AF_INET6 && ipv6.empty()) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr, text, sizeof(text));
      ipv6 = absl::StrCat("[", text, "]");
    }
  }
  freeaddrinfo(found);
  return ipv4.empty() ? ipv6 : ipv4;
}

}  // namespace

void WaitForInput(std::vector<zmq::pollitem_t>* items, std::chrono::milliseconds timeout) {
  std::vector<pollfd> fds(items->size());
  int wait_ms = static_cast<int>(timeout.count());
  for (size_t i = 0; i < items->size(); ++i) {
    zmq::pollitem_t& item = (*items)[i];
    item.revents = 0;
    fds[i] = {item.fd, POLLIN, 0};
    if (item.socket == nullptr) continue;
    // ZMQ_EVENTS takes in what the socket's I/O thread has signalled: with
    // nothing readable, its ZMQ_FD fires when the next message comes.
    size_t size = sizeof(fds[i].fd);
    uint32_t events = 0;
    size_t events_size = sizeof(events);
    if (zmq_getsockopt(item.socket, ZMQ_FD, &fds[i].fd, &size) != 0 ||
        zmq_getsockopt(item.socket, ZMQ_EVENTS, &events, &events_size) != 0) {
      fds[i].fd = -1;  // closed: poll() skips a negative fd
      continue;
    }
    if (events & ZMQ_POLLIN) {
      item.revents = ZMQ_POLLIN;
      wait_ms = 0;
    }
  }
  if (::poll(fds.data(), fds.size(), wait_ms) <= 0) return;
  for (size_t i = 0; i < items->size(); ++i) {
    if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) (*items)[i].revents |= ZMQ_POLLIN;
  }
}

absl::StatusOr<uint32_t> BindTcp(zmq::socket_t& socket, const std::string& host, uint32_t port) {
  auto endpoint_of = [port](const std::string& h) {
    return port == 0 ? absl::StrCat("tcp://", h, ":*") : TcpEndpoint(h, port);
  };
  std::string endpoint = endpoint_of(host);
  try {
    socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    // ZeroMQ binds interfaces and addresses, not names; a name that
    // resolves to an address of this host (a StatefulSet pod's own DNS
    // name, "localhost") is bound by that address.
    const std::string resolved = ResolveHost(host);
    if (resolved.empty() || resolved == host) {
      return absl::UnavailableError(absl::StrCat("cannot bind ", endpoint, ": ", e.what()));
    }
    endpoint = endpoint_of(resolved);
    try {
      socket.bind(endpoint);
    } catch (const zmq::error_t& again) {
      return absl::UnavailableError(absl::StrCat("cannot bind ", endpoint, " (", host, "): ", again.what()));
    }
  }
  std::string bound = socket.get(zmq::sockopt::last_endpoint);
  std::string h;
  uint32_t p = 0;
  if (auto st = SplitHostPort(bound.substr(bound.find("//") + 2), &h, &p); !st.ok()) return st;
  return p;
}

const std::string& LocalityId() {
  static const std::string id = [] {
    std::string boot;
    if (std::ifstream f("/proc/sys/kernel/random/boot_id"); f) std::getline(f, boot);
    std::error_code ec;
    const std::string net = std::filesystem::read_symlink("/proc/self/ns/net", ec).string();
    const std::string mnt = std::filesystem::read_symlink("/proc/self/ns/mnt", ec).string();
    // Without /proc nothing is known to be shared: every process is alone.
    if (boot.empty() || net.empty() || mnt.empty()) return absl::StrCat("pid-", getpid());
    return absl::StrCat(boot, "/", net, "/", mnt);
  }();
  return id;
}

std::string DataEndpoint(const pb::NodeInfo& peer, LocalTransport transport) {
  if (transport == LocalTransport::kIpc && !peer.ipc_endpoint().empty() && peer.locality() == LocalityId()) {
    return peer.ipc_endpoint();
  }
  return TcpEndpoint(peer.host(), peer.data_port());
}

}  // namespace sparta
