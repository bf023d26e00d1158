// RequestRouter: what a server does with one decoded data-plane request
// (PULL, PUSH, REPLICATE), decided without sockets.
//
// Admit() says whether the server takes the request: a worker's request
// must carry the server's view epoch (a forward may be newer: the server
// learns of the view a moment later; an older one comes from a stale
// primary), the table must exist, a push must have the table's row width,
// a push already applied (the same sender and sequence number) is only
// acknowledged again, and a pull must fit one reply. Plan() then splits the
// keys among the executors by shard, or names the first key in a shard this
// server does not serve, so that the sender resends under the current view
// and nothing is applied.
//
// The server's I/O thread owns it, and answers, records and submits what it
// decides. Not thread-safe.
#ifndef SPARTA_SERVER_REQUEST_ROUTER_H_
#define SPARTA_SERVER_REQUEST_ROUTER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "common/shard_view.h"
#include "server/duplicate_filter.h"
#include "server/request.h"
#include "server/table_registry.h"
#include "sparta.pb.h"

namespace sparta {

// The worker whose push a request is: the sender of a PUSH, the origin a
// REPLICATE names.
inline uint32_t OriginOf(const pb::Header& h) { return h.type() == pb::REPLICATE ? h.origin() : h.sender(); }

class RequestRouter {
 public:
  // The largest reply a pull may ask for.
  static constexpr uint64_t kMaxReplyBytes = uint64_t{1} << 30;

  enum class Verdict {
    kServe,           // route it (Plan())
    kRefuse,          // answer `refusal`
    kAlreadyApplied,  // a push applied before: acknowledge it again, apply nothing
  };
  struct Admission {
    Verdict verdict = Verdict::kServe;
    absl::Status refusal;
    const TableEntry* table = nullptr;  // with kServe
  };

  // `executors`: the server's executor threads; shard s goes to s % executors.
  RequestRouter(int executors, uint32_t num_shards);

  // `epoch`: the view this server is at.
  Admission Admit(const pb::Header& h, uint64_t epoch, const TableRegistry& tables,
                  const DuplicateFilter& duplicates) const;

  // Splits `keys` into one task per executor ((*tasks)[e]: positions in
  // request order and executor-local shards); for an update, `updated` gets
  // each shard it touches, once. An Aborted error names the first key whose
  // shard this server (`rank` in `view`) does not serve; nothing is split then.
  absl::Status Plan(pb::MsgType type, std::span<const uint64_t> keys, const ShardView& view, uint32_t rank,
                    std::vector<ShardTask>* tasks, std::vector<uint32_t>* updated);

 private:
  const int executors_;
  std::vector<uint64_t> touched_;  // per shard: the Plan() that last counted it
  uint64_t generation_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_REQUEST_ROUTER_H_
