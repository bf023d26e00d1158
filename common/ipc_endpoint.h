// IpcEndpoint: the Unix socket (ipc://) a server binds beside its TCP port
// for peers on the same host (cluster.local_transport: ipc), and the file
// that socket lives in.
//
// libzmq leaves that file behind when the socket closes (it removes only the
// files of wildcard endpoints it named itself), and a daemon killed with
// SIGKILL cannot remove it at all: /tmp filled with thousands of them. So
// the owner removes its file when it is destroyed, and Bind() first removes
// the files that earlier daemons left: those named like its own whose
// process is gone and that refuse a connection (nothing listens there; a
// daemon of another PID namespace sharing /tmp still does).
//
// Owned by the daemon next to the socket; not thread-safe.
#ifndef SPARTA_COMMON_IPC_ENDPOINT_H_
#define SPARTA_COMMON_IPC_ENDPOINT_H_

#include <cstdint>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "absl/status/statusor.h"

namespace sparta {

class IpcEndpoint {
 public:
  // Binds `socket` to /tmp/sparta-<pid>-<tcp_port>.ipc (in `folder`, for
  // tests), after removing the files dead daemons left there.
  static absl::StatusOr<std::unique_ptr<IpcEndpoint>> Bind(zmq::socket_t& socket, uint32_t tcp_port,
                                                           const std::string& folder = "/tmp");
  ~IpcEndpoint();  // removes the file
  IpcEndpoint(const IpcEndpoint&) = delete;
  IpcEndpoint& operator=(const IpcEndpoint&) = delete;

  // "ipc://<path>", what peers connect to.
  std::string endpoint() const { return "ipc://" + path_; }
  const std::string& path() const { return path_; }

  // Removes from `folder` the socket files of Sparta daemons that are gone
  // (see above). Returns how many it removed.
  static int RemoveLeftovers(const std::string& folder);

 private:
  explicit IpcEndpoint(std::string path) : path_(std::move(path)) {}
  const std::string path_;
};

}  // namespace sparta

#endif  // SPARTA_COMMON_IPC_ENDPOINT_H_
