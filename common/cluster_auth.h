// ClusterAuth: CurveZMQ security for every Sparta socket (cluster.auth).
//
// With cluster.auth: curve the cluster has one key pair (cluster.key_file).
// Every socket that binds is a CURVE server with that secret key; every
// socket that connects is a CURVE client that presents the same key pair. A
// ZAP handler (ZapAuthenticator, one per ZeroMQ context that binds) admits a
// connection only if the client's long-term public key is the cluster's: the
// CURVE handshake proves the client holds the matching secret key, so a node
// without the key file can neither join nor send a single message. Traffic
// is encrypted as a side effect. With cluster.auth: none the functions leave
// sockets as they are.
//
// The Secure* functions must be called by the socket's owning thread before
// bind/connect. ZapAuthenticator owns a thread and one inproc socket; it is
// thread-safe, and must be destroyed before its context.
#ifndef SPARTA_COMMON_CLUSTER_AUTH_H_
#define SPARTA_COMMON_CLUSTER_AUTH_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "common/config.h"

namespace sparta {

// A socket that binds (scheduler, server data port).
void SecureServerSocket(zmq::socket_t& socket, const ClusterConfig& cluster);
// A socket that connects to one of the above.
void SecureClientSocket(zmq::socket_t& socket, const ClusterConfig& cluster);

class ZapAuthenticator {
 public:
  // Null when cluster.auth is none. Binds the context's ZAP endpoint.
  static std::unique_ptr<ZapAuthenticator> Start(zmq::context_t* context, const ClusterConfig& cluster);
  ~ZapAuthenticator();
  ZapAuthenticator(const ZapAuthenticator&) = delete;
  ZapAuthenticator& operator=(const ZapAuthenticator&) = delete;

  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  uint64_t admitted() const { return admitted_.load(std::memory_order_relaxed); }

 private:
  ZapAuthenticator(zmq::context_t* context, std::string cluster_public_z85);
  void Run();

  zmq::socket_t socket_;
  std::string allowed_key_;  // 32 raw bytes
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> admitted_{0};
};

}  // namespace sparta

#endif  // SPARTA_COMMON_CLUSTER_AUTH_H_
