// RequestRouter: what a server does with one decoded data-plane request
// (PULL, PUSH, REPLICATE), decided without sockets.
//
// Admit() says whether the server takes the request: a worker's request
// must carry the server's view epoch (a forward may be newer: the server
// learns of the view a moment later; an older one is judged by shard in
// Plan()), the table must exist, a push must have the table's row width,
// and a pull must fit one reply. Plan() then splits the
// keys among the executors by shard (skipping a resent push's shards that
// have it already), or names the first key in a shard this
// server does not serve, so that the sender resends under the current view
// and nothing is applied.
//
// AdmitSnapshot() says the same for a part of a shard streamed to this
// server as a new replica (SHARD_SNAPSHOT, server/shard_streamer.h).
//
// The server's I/O thread owns it, and answers, records and submits what it
// decides. Not thread-safe.
#ifndef SPARTA_SERVER_REQUEST_ROUTER_H_
#define SPARTA_SERVER_REQUEST_ROUTER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "common/shard_order.h"
#include "common/shard_view.h"
#include "server/duplicate_filter.h"
#include "server/request.h"
#include "server/row_store.h"
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
  };
  struct Admission {
    Verdict verdict = Verdict::kServe;
    absl::Status refusal;
    const TableEntry* table = nullptr;  // with kServe
  };

  // `executors`: the server's executor threads; shard s goes to s % executors.
  // `read_only`: a serving cluster's server (sparta-server --serving), which
  // refuses every push: what it holds is one model version, as restored.
  RequestRouter(int executors, uint32_t num_shards, bool read_only = false);

  // `epoch`: the view this server is at. A read-only server refuses pushes
  // (FailedPrecondition).
  Admission Admit(const pb::Header& h, uint64_t epoch, const TableRegistry& tables) const;

  enum class SnapshotVerdict {
    kDrop,        // no such shard: counted and dropped, no answer
    kRefuse,      // answer `refusal`: the primary stops the stream
    kWhole,       // the end of the shard: it is whole once the parts before it are loaded
    kRows,        // load the rows (records of `stride` floats: the row, maybe then its stamp)
    kAdmission,   // load the admission counters (the third frame)
  };
  struct SnapshotAdmission {
    SnapshotVerdict verdict = SnapshotVerdict::kRows;
    absl::Status refusal;
    const TableEntry* table = nullptr;  // with kRows and kAdmission
    uint32_t stride = 0;                // with kRows
  };

  // A part of a shard's snapshot. `waiting`: this server still waits for the
  // shard's rows; a part from an older view is taken only then (a stale
  // primary's otherwise). The part's table is created here (and in `store`,
  // if any) if this server does not have it yet.
  SnapshotAdmission AdmitSnapshot(const pb::Header& h, uint64_t epoch, bool waiting, TableRegistry* tables,
                                  RowStore* store) const;

  // Splits the keys of request `h` into one task per executor ((*tasks)[e]:
  // positions and executor-local shards, grouped by shard (each shard's in
  // request order) when the task has kGroupAtLeast keys or more, else in
  // request order); for an update,
  // `updated` gets each shard it touches, once. An Aborted error names the
  // first key whose shard this server (`rank` in `view`) does not serve, or,
  // for a forward from an older view, whose shard its sender no longer
  // leads (a stale primary). An Unavailable error says that a worker's
  // request touches a shard this server is handing off (ShardView::
  // handing_off): the server parks it until the next view. Nothing is split
  // then. A forward from an older
  // view skips the keys of shards its sender still leads and this server no
  // longer holds (their new copy has the push from a snapshot).
  //
  // An update's keys in a shard it was applied to before (a resend, told by
  // `duplicates`) are skipped, and `*skipped` says so: `updated` lists only
  // the shards it is applied to now, and with none, nothing is split and the
  // push is only acknowledged again.
  absl::Status Plan(const pb::Header& h, std::span<const uint64_t> keys, const ShardView& view, uint32_t rank,
                    const DuplicateFilter& duplicates, std::vector<ShardTask>* tasks,
                    std::vector<uint32_t>* updated, bool* skipped);

  // Tasks at least this large have their keys grouped by shard.
  static constexpr size_t kGroupAtLeast = kOrderByShardAtLeast;

 private:
  void GroupByShard(ShardTask* task);

  const int executors_;
  const bool read_only_;
  std::vector<uint64_t> touched_;  // per shard: the Plan() that last counted it
  std::vector<bool> applied_before_;  // per shard, as of that Plan(): the update was applied to it
  uint64_t generation_ = 0;
  std::vector<uint32_t> ends_, order_, positions_;  // GroupByShard()'s scratch
};

}  // namespace sparta

#endif  // SPARTA_SERVER_REQUEST_ROUTER_H_
