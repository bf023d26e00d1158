#include "common/socket_util.h"

#include <charconv>

#include "absl/strings/str_cat.h"
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

void ConfigureSocket(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::maxmsgsize, kMaxFrameBytes);
  socket.set(zmq::sockopt::sndhwm, 100000);
  socket.set(zmq::sockopt::rcvhwm, 100000);
  // Requests are megabytes: large kernel buffers mean fewer, larger
  // send/recv calls, each taking the socket lock once.
  socket.set(zmq::sockopt::sndbuf, 4 << 20);
  socket.set(zmq::sockopt::rcvbuf, 4 << 20);
}

absl::StatusOr<uint32_t> BindTcp(zmq::socket_t& socket, const std::string& host, uint32_t port) {
  const std::string endpoint = port == 0 ? absl::StrCat("tcp://", host, ":*") : TcpEndpoint(host, port);
  try {
    socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("cannot bind ", endpoint, ": ", e.what()));
  }
  std::string bound = socket.get(zmq::sockopt::last_endpoint);
  std::string h;
  uint32_t p = 0;
  if (auto st = SplitHostPort(bound.substr(bound.find("//") + 2), &h, &p); !st.ok()) return st;
  return p;
}

}  // namespace sparta
