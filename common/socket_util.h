// Socket set-up shared by every daemon: endpoints, the options every Sparta
// socket carries, and binding to a port the OS picks. Stateless functions;
// each must be called by the thread that owns the socket.
#ifndef SPARTA_COMMON_SOCKET_UTIL_H_
#define SPARTA_COMMON_SOCKET_UTIL_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta.pb.h"

namespace sparta {

// "host:port" -> "tcp://host:port".
std::string TcpEndpoint(const std::string& host_port);
std::string TcpEndpoint(const std::string& host, uint32_t port);

// Splits "host:port"; the port must be a number in [0, 65535].
absl::Status SplitHostPort(const std::string& host_port, std::string* host, uint32_t* port);

// Connects a client's DEALER to the job's scheduler: `addresses` is
// cluster.scheduler, "host:port" or a comma-separated list of them (a
// leader and standbys, of which only the leader listens). With several,
// the socket connects to each and sends only over connections that are up
// (ZMQ_IMMEDIATE), so every message reaches whichever scheduler leads,
// also after a standby takes over. Must come after the socket's other
// options.
absl::Status ConnectToScheduler(zmq::socket_t& socket, const std::string& addresses);

// Options every socket gets: a short linger at close (kCloseLingerMs), a
// per-frame size cap (hostile input must not exhaust memory), and
// high-water marks deep enough for a window of large requests.
//
// Why a linger at all, since a dead peer must not hang shutdown: with none,
// libzmq 4.3.4 aborts the process ("Resource temporarily unavailable
// (src/session_base.cpp:260)") when the connection drops just after the
// socket closed part-way through sending a multipart message, which is what
// happens when every daemon of an aborted job exits at once. While it
// lingers, the connection may fail safely; a peer still connected when it
// ends would have to drop within microseconds of that moment.
inline constexpr int kCloseLingerMs = 100;
void ConfigureSocket(zmq::socket_t& socket);

// Waits until an item may have input or `timeout` passes, as zmq::poll
// does, with one system-level poll where zmq_poll makes two (it polls once
// without waiting first) and looks at each socket twice: on a busy server
// these were a fifth of its event loop's system calls per small request.
// Afterwards an fd item's revents says whether it is readable; a socket
// item's says only that it may have messages (they were there before the
// wait, or its ZMQ_FD fired): the caller reads it without blocking.
// Items ask for ZMQ_POLLIN only.
void WaitForInput(std::vector<zmq::pollitem_t>* items, std::chrono::milliseconds timeout);

// Binds to host on a port the OS chooses (or `port` if non-zero) and returns
// the bound port.
absl::StatusOr<uint32_t> BindTcp(zmq::socket_t& socket, const std::string& host, uint32_t port);

// The host, network namespace and filesystem (mount) namespace this
// process runs in: two processes with the same id can reach each other's
// Unix sockets. A server in a network namespace of its own, or a pod on
// the same node, is somewhere else.
const std::string& LocalityId();

// Where a worker or server connects to server `peer`'s data port: its Unix
// socket when `transport` is ipc and the peer has one in this process's
// locality, else TCP to host:data_port.
std::string DataEndpoint(const pb::NodeInfo& peer, LocalTransport transport);

}  // namespace sparta

#endif  // SPARTA_COMMON_SOCKET_UTIL_H_
