// ConnectionWatch: tells the scheduler at once when a node's connection to
// it closes, which is what a node's process dying looks like from here: the
// kernel closes its sockets, and ZeroMQ reports the closed connection on a
// socket monitor. Heartbeats take cluster.heartbeat_timeout to say the same.
//
// A closed connection only makes a node a suspect: a network blip closes
// connections too (ZeroMQ reconnects). The scheduler confirms with a probe
// of the node's own listening port (PortProbe) before it acts.
//
// ZeroMQ's monitor names connections by file descriptor, not by peer; each
// message the scheduler receives carries the descriptor it came over
// (Message::source_fd), so the watch learns which node uses which.
//
// Not thread-safe: owned by the scheduler's event loop, like its socket.
#ifndef SPARTA_SCHEDULER_CONNECTION_WATCH_H_
#define SPARTA_SCHEDULER_CONNECTION_WATCH_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"

namespace sparta {

class ConnectionWatch {
 public:
  // Watches `socket` (a bound ROUTER) through an inproc monitor in `context`.
  ConnectionWatch(zmq::context_t* context, zmq::socket_t* socket);

  absl::Status Start();

  // The peer `routing_id` sent a message over connection `fd`.
  void Seen(int fd, const std::string& routing_id);

  // The monitor socket, to poll for ZMQ_POLLIN.
  zmq::pollitem_t PollItem();

  // The routing ids of the peers whose connection has closed since the
  // last call.
  std::vector<std::string> Closed();

  // Whether a connection `routing_id` sent over is still open (as far as
  // the events read by Closed() tell).
  bool IsOpen(const std::string& routing_id) const;

 private:
  zmq::context_t* const context_;
  zmq::socket_t* const watched_;
  zmq::socket_t monitor_;
  std::string endpoint_;
  std::map<int, std::string> peer_by_fd_;
};

// PortProbe: whether anything listens on host:port, asked with one TCP
// connection attempt. A port that refuses the connection has no process
// behind it any more; a frozen process's port still accepts (the kernel
// answers for it), so a probe never declares a slow node dead.
enum class ProbeResult { kListening, kRefused, kNoAnswer };
ProbeResult ProbePort(const std::string& host, uint32_t port, int timeout_ms);

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_CONNECTION_WATCH_H_
