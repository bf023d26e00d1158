// ShardExecutor: one thread that owns a fixed set of virtual shards and is the
// only thread that ever touches their rows. The I/O thread routes each key of
// a request to the executor that owns the key's shard; executors apply pulls
// and pushes in arrival order without locks on the rows.
//
// Rows also go to the server's RowStore when it has one: with durability
// "wal" every push's rows are written (and logged) before the request
// completes; otherwise changed rows are remembered and written in one batch
// by PersistChanged() when a checkpoint is cut.
//
// With `sum_steps` (worker.consistency bsp) a push carrying a step clock is
// not applied at once: its gradients are added to the step's sums, which are
// applied together when the first request of a later step (or one without a
// clock, or a control task) reaches the executor. Under BSP no worker sends
// a request of step t+1 before every worker's step-t push is acknowledged,
// so by then the sums are complete, and a pull of step t never sees a
// partial step.
//
// Under a memory budget (server.memory_limit) the executor keeps its hot
// rows' DRAM under its share: after each task it evicts the coldest rows to
// the store (TableShard::Evict). A request that touches keys which are not
// hot has them looked up in the store in one batched MultiGet, on the
// executor's ColdTierThread: the request waits ("parked") while the
// executor serves requests for other shards; requests for the shards it
// touches wait behind it, so each shard still sees its requests in arrival
// order (and control tasks wait for every parked request). A parked
// request's shards are neither evicted from nor expired until it has run.
// The evicted rows are written by the same thread, one batch at a time while
// the executor goes on (their writes were half of a tiered executor's time);
// a lookup queued behind a write finds its rows, and every other use of the
// store from the executor waits for the write in flight first
// (SettleWrites()). Rows of tables without a TTL go to that thread's logs
// (server/cold_logs.h), not to RocksDB, and lookups read the logs first;
// every use of RocksDB from the executor but expiry's has the logs drained
// into it first (SettledStore()), so that it sees every cold row.
// A key found in the store comes back hot exactly as it left. A key found nowhere is new: it gets a
// row if its table admits it (TablePolicy), else a pull of it returns zeros
// and a push of it only counts its occurrences.
//
// Submit() is thread-safe and lock-free (a TaskQueue); everything else
// happens on the executor's thread, except LoadRow(), which is for filling
// the shards before Start(), and TryRunHere(), by which the I/O thread runs
// a small request itself when the executor is idle (a mutex held for each
// task keeps the two threads apart).
// Finished requests are posted to `done` for the I/O thread to answer.
#ifndef SPARTA_SERVER_SHARD_EXECUTOR_H_
#define SPARTA_SERVER_SHARD_EXECUTOR_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <memory>
#include <thread>
#include <vector>

#include "common/mailbox.h"
#include "common/task_queue.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "server/change_log.h"
#include "server/cold_logs.h"
#include "server/cold_tier_thread.h"
#include "server/request.h"
#include "server/row_store.h"
#include "server/shard_snapshot.h"
#include "server/table_shard.h"
#include "server/tier_report.h"

namespace sparta {

class ShardExecutor {
 public:
  struct Options {
    RowStore* store = nullptr;  // may be null; outlives the executor
    bool wal = false;           // storage.durability wal
    bool sum_steps = false;     // worker.consistency bsp
    // Bytes of hot rows this executor may hold; 0: unbounded (no cold tier).
    uint64_t memory_budget = 0;
    // Of a table's embedding.admission.counter_bytes, the part one shard
    // gets (the server's share divided by the shards it holds).
    double counter_share = 1.0;
    // Cold reads on a reader thread (off the executor's); else in line.
    // (bsp's step sums always read in line.)
    bool async_reads = true;
    // Evicted rows go to the reader thread's logs (server/cold_logs.h)
    // before RocksDB; their index counts against `memory_budget`. Only with
    // async_reads, and not with `wal` (which writes every row as it changes).
    bool cold_logs = true;
    // serving.publish_every: log every row written to the store, for the
    // published versions' deltas (server/change_log.h).
    bool log_changes = false;
    // A serving cluster's server: a pull of a key without a row reads the
    // row the key would start with (zeros, under admission) and creates
    // nothing, so requests for unseen keys cannot grow the tables.
    bool read_only = false;
  };

  // Finished requests go to `done`. Executor `index` of `count` owns the
  // virtual shards s with s % count == index.
  ShardExecutor(int index, int count, uint32_t num_shards, Mailbox<std::shared_ptr<Request>>* done,
                const Options& options);
  ~ShardExecutor();  // drains nothing: call Stop() first
  ShardExecutor(const ShardExecutor&) = delete;
  ShardExecutor& operator=(const ShardExecutor&) = delete;

  void Start();
  void Stop();
  void Submit(ShardTask task);
  // The server's I/O thread, for a request's only part: runs `task` on the
  // calling thread if this executor is idle (nothing queued or parked, no
  // task running), saving the hand-off to the executor's thread and the
  // one back; a small request's round trip is mostly such hand-offs.
  // Returns false, leaving `task` as it was, if the executor is busy; else
  // true, with *finished set when the request is complete (not parked for a
  // cold read), in which case nothing is posted to `done`.
  bool TryRunHere(ShardTask& task, bool* finished);

  // Executor thread (from a control task): writes every row changed since
  // the last call to the store. Returns the number of rows written.
  absl::StatusOr<size_t> PersistChanged();

  // The job resumes at worker step `step` (a restore): rows loaded or made
  // before the first push count as updated then (embedding.eviction.ttl in
  // steps), not at step 0, which would expire them all at once. Before Start().
  void ResumeAtStep(uint64_t step) { latest_step_ = std::max(latest_step_, step); }

  // Sets a row of `shard` (weights and optimizer state) as read from a
  // checkpoint or a snapshot. Before Start(), or on the executor's thread.
  void LoadRow(const TableEntry& table, uint32_t shard, uint64_t key, std::span<const float> row);

  // Executor thread (from a control task): takes `cut->shard` of `tables`
  // as it is now, for a new replica (server/shard_snapshot.h): copies the
  // tables' admission counters, and either copies the rows into chunks of
  // at most `max_chunk_bytes` (no store, or a shard of at most 16 chunks
  // whose rows are all hot) or writes the shard's changed rows to the store
  // and snapshots it (the streamer reads them from there a chunk at a time).
  absl::Status CutShard(const std::vector<const TableEntry*>& tables, size_t max_chunk_bytes, ShardCut* cut);
  // Executor thread (from a control task): forgets every row of `shard`
  // (its copy moved to another server), in DRAM and in the store, and what
  // it counted for admission. A shard that comes back starts empty and is
  // streamed in whole.
  absl::Status DropShard(uint32_t shard);

  // Executor thread (from a control task), a serving cluster's server:
  // makes the version `overlay` the rows of this executor's shards hold
  // (ServedVersions::Announce): its changed rows replace theirs (weights;
  // the optimizer state, which serving never reads, zeroed), a deleted
  // key's row becomes the one a key never seen reads, and a replaced
  // shard's rows go first. `tables`: the overlay's tables(), resolved.
  void FoldOverlay(const VersionOverlay& overlay, const std::vector<const TableEntry*>& tables);
  // serving.publish_every (Options::log_changes), executor thread: the
  // rows changed since version `base`, for the delta of version `version`
  // (ChangeLog::Cut), after PersistChanged() wrote them to the store.
  ChangeLog::Changes CutChanges(uint64_t version, uint64_t base);
  // `shard` was streamed in whole (a new copy): its next delta holds all
  // its rows, as the deletions before it are not known row by row.
  void MarkReplaced(uint32_t shard) {
    if (log_changes_) changes_.AddReplaced(shard);
  }
  // Whether rows written to the store are logged (Options::log_changes).
  bool logs_changes() const { return log_changes_; }
  // Bytes the change log holds (any thread).
  size_t change_log_bytes() const { return change_log_bytes_.load(std::memory_order_relaxed); }
  // Executor thread, after PersistChanged(): the weights (dim floats each,
  // into `weights`) of `keys` of `table` in `shard` as the store holds them
  // (hot or cold: what a checkpoint holds); found[i] is 0 for a key without
  // a row there.
  absl::Status ReadWeights(const TableEntry& table, uint32_t shard, std::span<const uint64_t> keys,
                           std::vector<float>* weights, std::vector<uint8_t>* found);
  // Executor thread, after PersistChanged(): every row of `table` in
  // `shard` that the store holds, hot and cold, by ascending key, until
  // `visit` fails.
  using WeightsVisitor = std::function<absl::Status(uint64_t key, std::span<const float> weights)>;
  absl::Status ForEachWeights(const TableEntry& table, uint32_t shard, const WeightsVisitor& visit);

  // Sets `shard`'s admission counters of `table` to a primary's; false if
  // they are not the size this server's are.
  bool LoadAdmission(const TableEntry& table, uint32_t shard, std::span<const uint8_t> counters);

  // The cold tier's failure (a read or an eviction's write failed), or OK;
  // any thread. Once failed, every request fails: rows may be missing.
  absl::Status failure() const;
  bool failed() const { return failed_.load(std::memory_order_acquire); }

  // Executor thread: adds the rows of each table held here that are in the
  // store (see TableShard::stored_rows()) to (*rows)[table id], growing it
  // as needed.
  void CountRowsByTable(std::vector<uint64_t>* rows) const;

  // Rows held by this executor's shards, hot and cold; any thread.
  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }
  // Rows of virtual shard `shard` (one of this executor's), all tables,
  // hot and cold; any thread. The scheduler balances joins by them.
  uint64_t shard_rows(uint32_t shard) const {
    const int64_t n = shard_rows_[shard / count_].load(std::memory_order_relaxed);
    return n > 0 ? static_cast<uint64_t>(n) : 0;
  }
  // Table `id`'s figures (any thread); nullptr if it never had a row here.
  const TableTierStats* tier_stats(uint32_t id) const {
    return id < kMaxTables && tier_used_[id].load(std::memory_order_acquire) ? &tier_[id] : nullptr;
  }
  // DRAM one hot row of table `id` costs here (any thread, once tier_stats(id) is set).
  size_t row_cost(uint32_t id) const {
    return id < kMaxTables ? row_cost_[id].load(std::memory_order_relaxed) : 0;
  }
  // The cold tier's logs (any thread): rows they hold, their files' bytes
  // and their index's (in DRAM, counted against the budget).
  uint64_t log_rows() const { return logs_ ? logs_->rows() : 0; }
  uint64_t log_file_bytes() const { return logs_ ? logs_->file_bytes() : 0; }
  uint64_t log_index_bytes() const { return logs_ ? logs_->index_bytes() : 0; }
  uint64_t log_moved_rows() const { return logs_ ? logs_->moved_rows() : 0; }
  // Tasks submitted and not yet started (any thread).
  int index() const { return index_; }
  int64_t queue_depth() const { return queued_.load(std::memory_order_relaxed); }

 private:
  // One batched lookup of cold rows, made on the reader thread.
  struct ColdRead {
    uint32_t table = 0;
    uint32_t record = 0;  // floats per row record
    std::vector<uint32_t> shards;
    std::vector<uint64_t> keys;
    std::vector<float> rows;     // record floats per key
    std::vector<uint8_t> found;  // per key
    absl::Status status;
    int64_t nanos = 0;
    bool done = false;  // executor thread only
  };
  // A task waiting for its cold read, or behind one that does.
  struct Parked {
    ShardTask task;
    std::vector<uint32_t> locals;  // the local shards it touches (none: a control task, which waits for all)
    std::shared_ptr<ColdRead> read;
  };
  enum class Outcome { kDone, kNeedsRead, kFailed };

  void Run();
  // Runs a control task or a request; a request that needs a cold read is parked.
  void RunTask(ShardTask task);
  // Applies or answers a request's part. `read`: the cold rows read for it
  // (null the first time). kNeedsRead: nothing was changed, and
  // pending_read_ says what to read.
  Outcome Execute(ShardTask& task, const ColdRead* read);
  // A pull at a staged version (Request::overlays): the task's keys that
  // version changed read its rows instead of the ones held.
  void ReadOverlays(Request& r, const ShardTask& task);
  // The weights a key without a row reads: its initializer's, or zeros
  // where the table admits keys only after some occurrences.
  static void DefaultWeights(const TableEntry& table, uint64_t key, float* out);
  // Hands a request's part back (the last executor posts the reply).
  void Finish(ShardTask& task);
  // Whether `task` must wait behind parked ones.
  bool MustWait(const ShardTask& task) const;
  // Parks `task` (with `read` to make, or behind others when null).
  void Park(ShardTask task, std::shared_ptr<ColdRead> read);
  void StartRead(const std::shared_ptr<ColdRead>& read);
  // The cold rows `task` will need, read while it waits behind parked tasks
  // (null: none, or not safe to read ahead now).
  std::shared_ptr<ColdRead> ReadAhead(const ShardTask& task);
  // The first pass over a request's part: slots_ (kNoSlot: not hot) and
  // shard_scratch_ per key, and misses_, the keys that are not hot.
  void FindRows(const Request& r, const ShardTask& task);
  // Of misses_, those that may be in the store: lookup_ (their positions in
  // the task), lookup_shards_ and lookup_keys_.
  void CollectColdMisses(const Request& r, const ShardTask& task);
  // A read of lookup_keys_ (in lookup_shards_) of table `table`.
  std::shared_ptr<ColdRead> ReadOfLookups(uint32_t table, uint32_t record);
  // Keys a pass over a request's rows prefetches ahead of the one it is on.
  static constexpr size_t kLookAhead = 8;
  // How much of a row a pass prefetches: all of a sparse row (dim 64 with
  // Adagrad's state is 512 bytes), the head of a dense block.
  static constexpr size_t kPrefetchBytes = 512;
  // Runs, in order, the parked tasks whose reads are back and that no
  // earlier parked task holds up.
  void DrainParked();
  // After each task: eviction and expiry.
  void Housekeeping();
  bool Blocked(const TableShard& shard) const { return blocked_[shard.shard() / count_] != 0; }
  // Gives slots_[i] of every miss (a key that is not hot) a row: from the
  // store (`read`'s rows, or a lookup made now when reads are in line), or
  // new if the table admits the key; kNoSlot otherwise.
  Outcome ResolveMisses(const Request& r, const ShardTask& task, bool is_push, const ColdRead* read);
  // Bytes of one shard's admission counters of a table with `policy`.
  size_t CounterBytes(const TablePolicy& policy) const;
  // Whether `key`'s occurrences (`count` more) earn it a row.
  bool Admit(TableShard& shard, const TablePolicy& policy, uint64_t key, uint32_t count);
  // Moves the coldest rows out until the hot rows fit the budget again.
  void EvictToBudget();
  size_t EvictFrom(TableShard& shard, size_t rows);
  // Looks up lookup_keys_ (in lookup_shards_) of `table` in the store into
  // lookup_rows_ / lookup_found_. False (and Fail()) if the store failed.
  bool ReadCold(uint32_t table, uint32_t stride);
  void Fail(const absl::Status& status);
  int64_t HotBytes() const;
  // Brings each table's side_bytes figure up to date with its shards.
  void CountSideBytes();
  // Evicts if the hot bytes are over the budget.
  void KeepToBudget();
  // Writes the evicted rows in batch_: on the tier thread when there is one
  // (after the write before it has landed), else here. False (and Fail())
  // if the store failed.
  bool WriteEvicted();
  // Waits until the tier thread's write of evicted rows (if any) has
  // landed: every use of the store from the executor but a lookup queued on
  // the tier thread (which runs after the write anyway) comes after it, so
  // that no read misses an evicted row and no write or delete of a row is
  // overtaken by an older copy of it.
  void SettleWrites();
  // The store, once the write in flight has landed and the logs have been
  // drained into it: it holds every cold row. False (and Fail()) if the
  // drain failed; the store is returned either way, for callers whose own
  // write or read then reports the failure too.
  RowStore* SettledStore();
  // Runs `job` on the tier thread after what is queued there and waits for
  // it (here when the thread is stopping). Its failure is Fail()ed.
  absl::Status RunOnTierThread(const std::function<absl::Status()>& job);
  // Where eviction writes and cold lookups go: the logs, or the store.
  absl::Status WriteToTier(rocksdb::WriteBatch* batch);
  absl::Status ReadFromTier(uint32_t table, std::span<const uint32_t> shards, std::span<const uint64_t> keys,
                            uint32_t floats, float* rows, std::vector<uint8_t>* found);
  // The logs' index may take this share of the budget (it counts against
  // the budget like the hot rows); past it their oldest rows move to
  // RocksDB as new ones come (ColdLogs). A quarter is left for hot rows at
  // the least: one hot row's bytes index about 18 rows in a log.
  static constexpr double kLogIndexShare = 0.75;
  // Rows per store write of evictions and checkpoints, so that no
  // WriteBatch (which keeps its largest size) grows with the table.
  static constexpr size_t kBatchRows = 16384;
  // embedding.eviction.ttl: the stamp a row touched by `r` (null: by no
  // request) gets: the push's step or its primary's clock; whether the row
  // in `slot` was last updated more than the TTL before `now`; and the
  // stamp at the end of a record read from the store.
  uint32_t NowStamp(const TablePolicy& policy, const Request* r);
  bool IsStale(const TableShard& shard, const TablePolicy& policy, uint32_t slot, uint32_t now) const;
  static uint32_t StampIn(const TableShard& shard, const float* record);
  // Deletes the expired rows of the next shard in turn (hot and cold).
  void ExpireSome();
  static constexpr int kTasksPerExpiry = 64;
  static constexpr size_t kExpirySlots = 4096;
  bool AdmitsEveryKey(const TableShard& shard) const;
  static void Bump(std::atomic<int64_t>& a, int64_t by) { a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed); }
  static void Bump(std::atomic<uint64_t>& a, uint64_t by) { a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed); }
  // Adds a push's gradients to the pending step sums.
  void AddPending(ShardTask& task);
  // Applies the pending step sums of every shard.
  void ApplyPendingSteps();
  // Writes `batch_` to the store (durability wal); logs a failure.
  absl::Status WriteWal();
  TableShard& Shard(uint32_t local, const TableEntry& table);
  // The shard's rows of table `id` here, or null if it never had any.
  const TableShard* FindShard(uint32_t shard, uint32_t id) const;

  const int index_;
  const int count_;
  RowStore* const store_;
  const bool wal_;
  const bool sum_steps_;
  const uint64_t budget_;
  const double counter_share_;
  std::unique_ptr<TableTierStats[]> tier_;  // by table id
  std::unique_ptr<std::atomic<bool>[]> tier_used_;
  std::unique_ptr<std::atomic<size_t>[]> row_cost_;
  std::vector<TableShard*> all_shards_;  // every shard made so far, for eviction
  bool any_ttl_ = false;
  int tasks_since_expiry_ = 0;
  int calls_since_side_count_ = 0;  // KeepToBudget() calls since CountSideBytes()
  size_t expiry_cursor_ = 0;
  uint64_t latest_step_ = 0;  // the highest step a push carried
  std::vector<float> expired_scratch_;
  const bool async_reads_;
  std::deque<Parked> parked_;
  std::vector<int> blocked_;  // per local shard: parked tasks that touch it
  std::unique_ptr<std::atomic<int64_t>[]> shard_rows_;  // per local shard: rows, all tables
  int parked_controls_ = 0;
  std::vector<uint8_t> walk_;  // DrainParked()'s per-shard marks
  std::shared_ptr<ColdRead> pending_read_;  // what Execute() asked to read
  std::unique_ptr<ColdTierThread> tier_thread_;  // with async_reads_; stopped before the executor's thread
  // With the tier thread, unless every push is logged to the store as it
  // comes (durability wal: nothing is written on eviction). Used on the
  // tier thread (or here once it has stopped).
  std::unique_ptr<ColdLogs> logs_;
  // The evicted rows the tier thread is writing (in flight while
  // write_in_flight_), swapped with batch_'s so that both keep their size.
  rocksdb::WriteBatch evicted_in_flight_;
  std::mutex write_mu_;
  std::condition_variable write_landed_;
  bool write_in_flight_ = false;  // guarded by write_mu_
  std::vector<std::pair<uint32_t, size_t>> used_tables_;  // (id, bytes per hot row)
  std::vector<const TablePolicy*> policy_of_;             // by table id
  // worker.consistency bsp: (shard, key) admitted by the pushes of the step.
  absl::flat_hash_set<std::pair<uint32_t, uint64_t>> step_admitted_;
  mutable std::mutex failure_mu_;
  absl::Status failure_;  // guarded by failure_mu_
  std::atomic<bool> failed_{false};
  size_t evict_cursor_ = 0;
  // Execute()'s scratch, reused across tasks.
  std::vector<uint32_t> slots_;
  std::vector<TableShard*> shard_scratch_;
  std::vector<uint32_t> misses_;  // positions in the task
  std::vector<uint8_t> created_;  // per position: the row was made by this task
  std::vector<uint32_t> lookup_;  // misses looked up in the store
  std::vector<uint32_t> lookup_shards_;
  std::vector<uint64_t> lookup_keys_;
  std::vector<float> lookup_rows_;
  std::vector<uint8_t> lookup_found_;
  std::vector<uint32_t> read_at_;  // ResolveMisses: where lookup_keys_[j] is in the read used
  uint64_t pending_clock_ = 0;  // step of the pending sums; 0: none
  // Worker requests of a step older than the one being summed: under bsp
  // none come (no worker starts step t+1 before every step-t push is in),
  // so one means the workers' step numbers and the servers' disagree.
  uint64_t steps_out_of_order_ = 0;
  RowBatch batch_;
  const bool log_changes_;
  const bool read_only_;
  ChangeLog changes_;  // with log_changes_: what batch_ wrote, for the deltas
  std::atomic<size_t> change_log_bytes_{0};
  Mailbox<std::shared_ptr<Request>>* const done_;
  // Held while a task runs, by the executor's thread or by TryRunHere()'s
  // caller: the executor's state is used by one thread at a time.
  std::mutex run_mu_;
  bool running_here_ = false;   // guarded by run_mu_: a TryRunHere() task is running
  bool finished_here_ = false;  // guarded by run_mu_: and its request is complete
  // shards_[local][table id]; created on first use.
  std::vector<std::vector<std::unique_ptr<TableShard>>> shards_;
  std::thread thread_;
  TaskQueue<ShardTask> queue_;
  std::atomic<uint64_t> rows_{0};
  // `n` rows more (or fewer) in `shard`: rows_ and shard_rows_.
  void CountRows(const TableShard& shard, int64_t n) {
    rows_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    shard_rows_[shard.shard() / count_].fetch_add(n, std::memory_order_relaxed);
  }
  std::atomic<int64_t> queued_{0};
  std::vector<float> grad_scratch_;  // one fp16 gradient row widened to fp32
  // The fp32 gradient of key i of a push, widened from fp16 if need be.
  const float* GradOf(const Request& r, size_t position, uint32_t dim);
  std::vector<uint32_t> order_scratch_;  // durability "wal": rows in storage order
};

}  // namespace sparta

#endif  // SPARTA_SERVER_SHARD_EXECUTOR_H_
