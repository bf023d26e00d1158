// IpcEndpoint: a server's Unix socket file goes with the server, and the
// files of daemons that are gone (killed with SIGKILL, or a libzmq close,
// which leaves the file) are removed by the next one that binds; a file
// that something still listens on stays.
#include "common/ipc_endpoint.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"

namespace sparta::ipc_endpoint_test {
namespace {

// A PID no process has: a child's, once it has exited and been reaped.
pid_t DeadPid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  return child;
}

// Makes a Unix socket file at `path` that nothing listens on, as a killed
// daemon leaves it.
void LeaveSocketFile(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  close(fd);
}

TEST_CASE("a server's Unix socket file goes with it, and the files of dead daemons go at the next bind", "[ipc]") {
  const std::string folder = absl::StrCat("/tmp/sparta-ipc-test-", getpid());
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder);
  const pid_t dead = DeadPid();
  const std::string left = absl::StrCat(folder, "/sparta-", dead, "-4000.ipc");
  LeaveSocketFile(left);
  // A daemon of another PID namespace: its PID means nothing here, but it listens.
  zmq::context_t context(1);
  zmq::socket_t listening(context, zmq::socket_type::router);
  const std::string live = absl::StrCat(folder, "/sparta-", dead, "-4001.ipc");
  listening.bind("ipc://" + live);
  // Not a Sparta name: never touched.
  const std::string other = folder + "/other.ipc";
  LeaveSocketFile(other);
  const std::string almost = absl::StrCat(folder, "/sparta-", dead, "x-4002.ipc");
  LeaveSocketFile(almost);
  REQUIRE(std::filesystem::exists(left));

  zmq::socket_t socket(context, zmq::socket_type::router);
  std::string path;
  {
    auto ipc = IpcEndpoint::Bind(socket, 5000, folder);
    REQUIRE(ipc.ok());
    path = (*ipc)->path();
    CHECK((*ipc)->endpoint() == "ipc://" + path);
    CHECK(path == absl::StrCat(folder, "/sparta-", getpid(), "-5000.ipc"));
    CHECK(std::filesystem::exists(path));
    CHECK_FALSE(std::filesystem::exists(left));
    CHECK(std::filesystem::exists(live));
    CHECK(std::filesystem::exists(other));
    CHECK(std::filesystem::exists(almost));
    // It is reachable while it lives.
    zmq::socket_t client(context, zmq::socket_type::dealer);
    client.connect((*ipc)->endpoint());
    client.send(zmq::str_buffer("hello"), zmq::send_flags::none);
    zmq::message_t id, body;
    REQUIRE(socket.recv(id).has_value());
    REQUIRE(socket.recv(body).has_value());
    CHECK(body.to_string() == "hello");
    client.close();
  }
  CHECK_FALSE(std::filesystem::exists(path));
  // Its own live file is not another's leftover either.
  CHECK(IpcEndpoint::RemoveLeftovers(folder) == 0);
  socket.close();
  listening.close();
  std::filesystem::remove_all(folder);
}

}  // namespace
}  // namespace sparta::ipc_endpoint_test
