// Server: a parameter server daemon. It registers with the scheduler, holds
// the shards the cluster view assigns to it, and answers CREATE_TABLE, PULL
// and PUSH requests from workers.
//
// Threads: the I/O thread (Run()) owns the ROUTER socket; it decodes each
// request, checks its epoch, table and shard ownership, drops duplicates, and
// routes every key to the ShardExecutor owning the key's shard
// (server.threads of them). Executors post finished requests back; the I/O
// thread sends the replies. Rows are touched only by their executor.
//
// With storage.path set the server keeps its rows in a RowStore (RocksDB)
// under <storage.path>/server-<rank>, cuts its part of each checkpoint when
// the scheduler asks (CHECKPOINT), and, when the job resumes from a
// checkpoint, loads the rows of the shards it now owns from whichever
// server's part of the checkpoint holds them.
#ifndef SPARTA_SERVER_SERVER_H_
#define SPARTA_SERVER_SERVER_H_

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "common/cluster_auth.h"
#include "common/config.h"
#include "common/daemon_metrics.h"
#include "common/ipc_endpoint.h"
#include "common/traffic_counters.h"
#include "common/uninitialized_vector.h"
#include "common/mailbox.h"
#include "server/duplicate_filter.h"
#include "common/scheduler_client.h"
#include "common/shard_view.h"
#include "server/checkpoint_part.h"
#include "server/replicator.h"
#include "server/request.h"
#include "server/request_router.h"
#include "server/row_store.h"
#include "server/shard_executor.h"
#include "server/shard_snapshot.h"
#include "server/shard_streamer.h"
#include "server/snapshot_retries.h"
#include "server/table_registry.h"
#include "server/version_stager.h"

namespace sparta {

class Server {
 public:
  // `join`: a server started for a running job (--join), which takes a
  // free rank or one past cluster.servers and gets shards moved to it.
  Server(const Config& config, int rank, std::string info_file, bool join = false);
  ~Server();

  // Serves until the scheduler ends the job. OK on a clean SHUTDOWN.
  absl::Status Run();

 private:
  void HandleRequest(Message message);
  void HandleControl(const pb::Header& h);
  // Replication and failover (see replicator.h).
  void AdoptView(const pb::ClusterView& view);
  void OnNewView(const pb::ClusterView& view);
  void OnApplied(const std::shared_ptr<Request>& request);
  void OnReplicaAck(const std::shared_ptr<Request>& request, const absl::Status& status);
  // OnReplicaAck as the Replicator's callback.
  const Replicator::AckCallback on_replica_ack_ = [this](const std::shared_ptr<Request>& r, const absl::Status& st) {
    OnReplicaAck(r, st);
  };
  bool IsReplicaOf(uint32_t shard) const;
  // Live shard moves (ShardView::handing_off): a worker's request for a
  // shard this server hands off waits in parked_ until the next view,
  // which sends it back to its worker to resend; once no push it admitted
  // for the shard is unanswered (applied here and acknowledged by every
  // replica), the scheduler is told (SHARDS_HANDED_OFF), and switches the
  // shard's primary in that next view.
  void ReleaseParked();
  void SettleInFlight(const Request& request);
  void ReportHandoffs();
  // Starts a stream: its forwards wait from here (Replicator), and the cut
  // is queued on the shard's executor behind what was routed before.
  void SnapshotShard(uint32_t shard, uint32_t peer);
  // Starts the queued streams still wanted, kConcurrentSnapshots at a time.
  // A view that moves many shards queues them all; cut at once, their
  // cuts (each writes the shard's changed rows to the store) held the
  // executors for as long as a million rows take to write, and training
  // with them. Until its stream starts, a shard's forwards go to the new
  // copy as they come: its cut, taken later, holds them too, and its rows
  // then replace what they made there.
  void StartSnapshots();
  // A stream ended (whole, cancelled or failed): the forwards held for it
  // go (Replicator::SnapshotDone), and the next queued stream may start.
  void EndStream(uint32_t peer, uint32_t shard);
  // The duplicate records taken at the cut of the oldest stream of `shard`
  // to `peer` still under way, forgotten here.
  std::vector<uint64_t> TakeStreamRecords(uint32_t peer, uint32_t shard);
  static constexpr int kConcurrentSnapshots = 2;
  void SendSnapshots();
  // Streams again the shards whose stream broke and whose try is due.
  void RetrySnapshots();
  void LoadSnapshot(Message message);
  // Tells a primary that a part of a shard is loaded here, or refused.
  void AckSnapshot(const Message& part, const absl::Status& status);
  void FillHeartbeat(pb::Header* h);
  // A serving cluster following its job (server/version_stager.h): a
  // version to stage, a staged one read, or one announced, whose versions
  // before the last announced one are then folded into the rows.
  void OnVersionNews(const pb::Header& h);
  void FoldVersions(uint64_t announced);
  // Reports (as a heartbeat) that shards became whole here, if any did.
  void ReportWholeShards();
  // The executors' rows per shard, for heartbeats.
  void PublishShardRows();
  void Route(std::shared_ptr<Request> request);
  // Requests of at most this many row floats run on the I/O thread when
  // their executor is idle (ShardExecutor::TryRunHere): 64K floats take
  // tens of microseconds, about what two hand-offs cost.
  static constexpr size_t kRunHereFloats = 1 << 16;
  // Sends a RESPONSE; `values` (fp32) or `half_values` (fp16) become its frame.
  void Reply(const Message& request, absl::Status status, UninitializedVector<float>* values = nullptr,
             uint32_t dim = 0, UninitializedVector<uint16_t>* half_values = nullptr);
  void Answer(const std::shared_ptr<Request>& request);
  // The write-ahead log failed: tells the scheduler (once), so that the job
  // fails naming the path and the cause. Returns that error.
  absl::Status ReportStorageFailure();
  // An executor's cold tier failed: the same, for that cause.
  absl::Status ReportTierFailure();
  pb::ServerStats Stats() const;
  // Figures only the main thread may read, for /metrics.
  void PublishMetrics();

  const Config config_;
  const int requested_rank_;
  const bool join_;  // --join: a server added to a running job
  const std::string info_file_;
  zmq::context_t context_;
  std::unique_ptr<ZapAuthenticator> zap_;  // cluster.auth: curve
  zmq::socket_t socket_;
  std::unique_ptr<IpcEndpoint> ipc_;  // cluster.local_transport: ipc; its file goes with the server
  int rank_ = -1;
  uint64_t epoch_ = 0;
  ShardView shards_;  // the adopted view's shard map
  std::unique_ptr<Replicator> replicator_;
  // Per shard, read by the heartbeat thread once shards_ready_ is set:
  // update batches applied, and whether this server replicates the shard
  // without holding it in whole yet (a new replica waiting for its rows).
  uint32_t num_shards_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> shard_applied_;
  std::unique_ptr<std::atomic<bool>[]> incomplete_;
  std::atomic<uint64_t> view_epoch_{0};  // the view heartbeats report
  std::atomic<bool> shards_ready_{false};
  std::unique_ptr<RequestRouter> router_;  // made with the first view
  // Live shard moves (I/O thread only): by shard, pushes this server leads
  // that are admitted and not yet answered; the requests held back; the
  // shards handing off in this view and not yet reported.
  std::vector<uint32_t> updates_in_flight_;
  std::vector<std::shared_ptr<Request>> parked_;
  std::vector<uint32_t> handoffs_unreported_;
  // Forwards and snapshot parts of a view this server has yet to adopt.
  std::deque<Message> ahead_;
  // Parts of shards on their way to new replicas, from the streamer.
  Mailbox<SnapshotChunk> snapshots_;
  SnapshotRetries snapshot_retries_;
  std::deque<std::pair<uint32_t, uint32_t>> snapshot_queue_;  // (shard, replica) not started yet
  int snapshots_running_ = 0;  // started and not ended (their end chunk not sent)
  absl::Status fatal_;  // set when this server must stop serving
  bool storage_failed_ = false;  // the scheduler has been told the log failed
  TableRegistry tables_;
  std::unique_ptr<RowStore> store_;
  // Made in Run(); after store_ and snapshots_, which it uses.
  std::unique_ptr<ShardStreamer> streamer_;
  SchedulerClient* scheduler_ = nullptr;
  std::atomic<bool> whole_news_{false};  // a shard became whole since the last report (executor threads set it)
  std::chrono::steady_clock::time_point last_whole_report_;  // I/O thread
  Mailbox<pb::Header> control_;  // from the scheduler client's thread
  std::unique_ptr<VersionStager> stager_;  // a serving cluster's server
  std::atomic<uint64_t> announced_version_{0};  // for heartbeats
  DuplicateFilter duplicates_;
  // (peer, shard) -> the duplicate records of each stream of the shard to
  // the peer not yet ended, in the order they started: taken at the cut,
  // sent with the stream's end (DuplicateFilter::CopyShard). I/O thread.
  std::map<std::pair<uint32_t, uint32_t>, std::deque<std::vector<uint64_t>>> stream_records_;
  Mailbox<std::shared_ptr<Request>> done_;
  std::vector<std::unique_ptr<ShardExecutor>> executors_;
  TrafficCounters traffic_;  // answered pulls and pushes, their keys, payload bytes
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> published_rows_{0};  // as of the last PublishMetrics(), for heartbeats
  std::unique_ptr<std::atomic<uint64_t>[]> published_shard_rows_;  // the same, per virtual shard
  std::mutex tier_mu_;
  pb::ServerStats tier_;  // memory and per-table tier figures, as of the last PublishMetrics(); guarded by tier_mu_
  // After everything its collectors read; before the context (its ZAP handler).
  DaemonMetrics metrics_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_SERVER_H_
