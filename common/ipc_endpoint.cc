#include "common/ipc_endpoint.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sparta {

namespace {

// The PID in a file name "sparta-<pid>-<port>.ipc", or 0 if it is not one.
// (Parsed by hand: std::regex here put libstdc++'s regex code, instrumented
// under TSan, in every binary, and cpp-httplib's own statics then ran
// through it and were reported as races.)
pid_t PidOfSocketFile(std::string_view name) {
  constexpr std::string_view kPrefix = "sparta-", kSuffix = ".ipc";
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return 0;
  name = name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  const size_t dash = name.find('-');
  if (dash == std::string_view::npos) return 0;
  const std::string_view pid = name.substr(0, dash), port = name.substr(dash + 1);
  auto digits = [](std::string_view s, size_t most) {
    return !s.empty() && s.size() <= most && s.find_first_not_of("0123456789") == std::string_view::npos;
  };
  if (!digits(pid, 9) || !digits(port, 5)) return 0;
  pid_t value = 0;
  for (char c : pid) value = value * 10 + (c - '0');
  return value;
}

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
  int removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const pid_t pid = PidOfSocketFile(it->path().filename().string());
    if (pid <= 0 || !it->is_socket(ec) || ProcessExists(pid)) continue;
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
