// EtcdClient: the few calls of etcd's v3 API that the scheduler needs (keys,
// transactions, leases), over etcd's JSON gateway (HTTP POST /v3/...).
// Debian has no C++ etcd client; the gateway speaks etcd's own protobuf
// messages as JSON, so requests and answers are the messages of
// proto/etcd_gateway.proto, turned into and out of JSON by Protobuf.
//
// It talks to one endpoint of the etcd cluster at a time and moves to the
// next when a call cannot reach it (etcd forwards writes to its leader
// itself). Each call is bounded by `timeout`, so a caller's loop never
// hangs on a dead etcd for longer.
//
// Not thread-safe: one thread uses it (the scheduler's).
#ifndef SPARTA_SCHEDULER_ETCD_CLIENT_H_
#define SPARTA_SCHEDULER_ETCD_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/message.h>

#include "absl/status/statusor.h"
#include "etcd_gateway.pb.h"

namespace httplib {
class Client;
}

namespace sparta {

class EtcdClient {
 public:
  // `endpoints`: "host:port" of etcd's client URLs (http).
  EtcdClient(std::vector<std::string> endpoints, std::chrono::milliseconds timeout);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // The key's current value and revisions; nullopt when it does not exist.
  absl::StatusOr<std::optional<etcd::KeyValue>> Get(std::string_view key);
  // Writes `value` under `key` (bound to `lease` unless 0).
  absl::Status Put(std::string_view key, std::string_view value, int64_t lease = 0);
  absl::StatusOr<etcd::TxnResponse> Txn(const etcd::TxnRequest& txn);
  // A lease of `ttl` seconds (etcd may raise a TTL below its minimum).
  absl::StatusOr<etcd::LeaseGrantResponse> GrantLease(int64_t ttl);
  // Renews `lease`; returns its remaining TTL in seconds, 0 if it expired.
  absl::StatusOr<int64_t> KeepAlive(int64_t lease);
  absl::Status Revoke(int64_t lease);

  // The revision of the store as of the last answer.
  int64_t revision() const { return revision_; }

 private:
  // POSTs `request` as JSON to `path` and reads the answer into `response`.
  absl::Status Call(const std::string& path, const google::protobuf::Message& request,
                    google::protobuf::Message* response);
  httplib::Client& Current();

  const std::vector<std::string> endpoints_;
  const std::chrono::milliseconds timeout_;
  size_t current_ = 0;
  std::unique_ptr<httplib::Client> client_;  // to endpoints_[current_]
  int64_t revision_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_ETCD_CLIENT_H_
