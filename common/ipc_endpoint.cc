#include "common/ipc_endpoint.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sparta {

namespace {

// Whether a process `pid` exists in this PID namespace.
bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

// Whether connecting to the Unix socket at `path` is refused: nothing
// listens there any more.
bool NobodyListens(const std::string& path) {
  sockaddr_un address{};
  if (path.size() >= sizeof(address.sun_path)) return false;
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool refused =
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 && errno == ECONNREFUSED;
  close(fd);
  return refused;
}

}  // namespace

int IpcEndpoint::RemoveLeftovers(const std::string& folder) {
  static const std::regex kName(R"(sparta-(\d{1,9})-\d{1,5}\.ipc)");
  int removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::smatch match;
    if (!std::regex_match(name, match, kName)) continue;
    if (!it->is_socket(ec) || ProcessExists(static_cast<pid_t>(std::stol(match[1].str())))) continue;
    if (!NobodyListens(it->path().string())) continue;
    if (std::filesystem::remove(it->path(), ec)) ++removed;
  }
  return removed;
}

absl::StatusOr<std::unique_ptr<IpcEndpoint>> IpcEndpoint::Bind(zmq::socket_t& socket, uint32_t tcp_port,
                                                               const std::string& folder) {
  if (const int removed = RemoveLeftovers(folder); removed > 0) {
    spdlog::info("removed {} Unix socket files that daemons no longer running left in {}", removed, folder);
  }
  std::string path = absl::StrCat(folder, "/sparta-", getpid(), "-", tcp_port, ".ipc");
  try {
    socket.bind("ipc://" + path);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("cannot bind ipc://", path, ": ", e.what()));
  }
  return std::unique_ptr<IpcEndpoint>(new IpcEndpoint(std::move(path)));
}

IpcEndpoint::~IpcEndpoint() {
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

}  // namespace sparta
