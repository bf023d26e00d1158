#include "scheduler/etcd_client.h"

#include <httplib.h>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/socket_util.h"

namespace sparta {

EtcdClient::EtcdClient(std::vector<std::string> endpoints, std::chrono::milliseconds timeout)
    : endpoints_(std::move(endpoints)), timeout_(timeout) {}

EtcdClient::~EtcdClient() = default;

httplib::Client& EtcdClient::Current() {
  if (client_ == nullptr) {
    std::string host;
    uint32_t port = 0;
    if (!SplitHostPort(endpoints_[current_], &host, &port).ok()) host = endpoints_[current_];
    client_ = std::make_unique<httplib::Client>(host, static_cast<int>(port));
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count();
    client_->set_connection_timeout(us / 1000000, us % 1000000);
    client_->set_read_timeout(us / 1000000, us % 1000000);
    client_->set_write_timeout(us / 1000000, us % 1000000);
    client_->set_keep_alive(true);
  }
  return *client_;
}

absl::Status EtcdClient::Call(const std::string& path, const google::protobuf::Message& request,
                              google::protobuf::Message* response) {
  namespace pbu = google::protobuf::util;
  std::string body;
  pbu::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  if (auto st = pbu::MessageToJsonString(request, &body, print); !st.ok()) {
    return absl::InternalError(absl::StrCat("etcd: cannot encode ", path, ": ", st.ToString()));
  }
  std::string last_error;
  // Each endpoint once, starting with the one that answered last.
  for (size_t tried = 0; tried < endpoints_.size(); ++tried) {
    httplib::Result result = Current().Post(path, body, "application/json");
    if (!result) {
      last_error = absl::StrCat(endpoints_[current_], ": ", httplib::to_string(result.error()));
      client_.reset();
      current_ = (current_ + 1) % endpoints_.size();
      continue;
    }
    if (result->status != 200) {
      // An answer from etcd itself (a bad request, no leader): not the
      // endpoint's fault, so the next one is not tried.
      return absl::UnavailableError(
          absl::StrCat("etcd at ", endpoints_[current_], ": ", path, ": HTTP ", result->status, ": ", result->body));
    }
    // Streaming calls (lease keepalive) answer one JSON object per line.
    std::string_view json = result->body;
    if (auto nl = json.find('\n'); nl != std::string_view::npos) json = json.substr(0, nl);
    pbu::JsonParseOptions parse;
    parse.ignore_unknown_fields = true;
    if (auto st = pbu::JsonStringToMessage(std::string(json), response, parse); !st.ok()) {
      return absl::DataLossError(absl::StrCat("etcd at ", endpoints_[current_], ": ", path,
                                              ": an answer that is not what etcd sends: ", st.ToString()));
    }
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("etcd: no endpoint answered ", path, " (last: ", last_error, ")"));
}

absl::StatusOr<std::optional<etcd::KeyValue>> EtcdClient::Get(std::string_view key) {
  etcd::RangeRequest request;
  request.set_key(std::string(key));
  etcd::RangeResponse response;
  if (auto st = Call("/v3/kv/range", request, &response); !st.ok()) return st;
  revision_ = response.header().revision();
  if (response.kvs_size() == 0) return std::optional<etcd::KeyValue>();
  return std::optional<etcd::KeyValue>(response.kvs(0));
}

absl::Status EtcdClient::Put(std::string_view key, std::string_view value, int64_t lease) {
  etcd::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease);
  etcd::PutResponse response;
  if (auto st = Call("/v3/kv/put", request, &response); !st.ok()) return st;
  revision_ = response.header().revision();
  return absl::OkStatus();
}

absl::StatusOr<etcd::TxnResponse> EtcdClient::Txn(const etcd::TxnRequest& txn) {
  etcd::TxnResponse response;
  if (auto st = Call("/v3/kv/txn", txn, &response); !st.ok()) return st;
  revision_ = response.header().revision();
  return response;
}

absl::StatusOr<etcd::LeaseGrantResponse> EtcdClient::GrantLease(int64_t ttl) {
  etcd::LeaseGrantRequest request;
  request.set_ttl(ttl);
  etcd::LeaseGrantResponse response;
  if (auto st = Call("/v3/lease/grant", request, &response); !st.ok()) return st;
  if (!response.error().empty() || response.id() == 0) {
    return absl::UnavailableError(absl::StrCat("etcd: lease grant refused: ", response.error()));
  }
  return response;
}

absl::StatusOr<int64_t> EtcdClient::KeepAlive(int64_t lease) {
  etcd::LeaseKeepAliveRequest request;
  request.set_id(lease);
  etcd::LeaseKeepAliveStreamResult response;
  if (auto st = Call("/v3/lease/keepalive", request, &response); !st.ok()) return st;
  return response.result().ttl();
}

absl::Status EtcdClient::Revoke(int64_t lease) {
  etcd::LeaseRevokeRequest request;
  request.set_id(lease);
  etcd::PutResponse response;  // only its header
  return Call("/v3/lease/revoke", request, &response);
}

}  // namespace sparta
