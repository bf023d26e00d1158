// Trainer: runs a model over a stream of batches against the parameter
// servers, with communication overlapped:
//
//   pull(i+1) issued  ->  wait pull(i)  ->  compute(i)  ->  push(i) issued
//
// so batch i's compute overlaps batch i+1's pull and the pushes of earlier
// batches; at most worker.max_inflight pushes may be unacknowledged before
// the trainer waits for the oldest (a bounded-delay window, as in the OSDI'14
// parameter server).
//
// Consistency (worker.consistency, see clock_gate.h): under ssp a step's pull
// waits until the slowest worker is close enough; under bsp there is no
// prefetch, every step's pushes are drained before the next step starts,
// and requests carry the step number so that servers sum each step's pushes.
//
// Not thread-safe: one trainer per compute thread (they may share the
// client, the loader and the clock gate).
#ifndef SPARTA_WORKER_TRAINER_H_
#define SPARTA_WORKER_TRAINER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta.pb.h"
#include "worker/clock_gate.h"
#include "worker/data/data_loader.h"
#include "worker/dense_cache.h"
#include "worker/kv_client.h"
#include "worker/training_progress.h"
#include "worker/compute/step_runner.h"
#include "worker/step_gate.h"
#include "sparta/sdk/model.h"

namespace sparta {

class Trainer {
 public:
  struct TrainResult {
    uint64_t steps = 0;  // including skipped ones
    uint64_t examples = 0;
    double seconds = 0;
    double last_epoch_loss = 0;  // mean logloss over the last epoch's batches
    double network_wait_seconds = 0;  // blocked on pulls to arrive or pushes to be acknowledged
  };
  struct EvalResult {
    double auc = 0;
    double logloss = 0;
    uint64_t rows = 0;
  };

  // `tables` are the specs created on the servers, in the model's order.
  // `runner` computes the model's steps on the chosen backend. `cache` (may
  // be null) holds the dense tables shared by the worker's compute threads;
  // training steps read them from there.
  Trainer(const Config& config, KVClient* client, StepRunner* runner, std::vector<pb::TableSpec> tables,
          DenseCache* cache = nullptr);

  // How a training run fits into the job: steps already done before a
  // restored checkpoint (their batches are skipped), where to stop for
  // checkpoints, and what to do after each step.
  struct TrainHooks {
    // Steps this thread counts as done before it starts (restored from a
    // checkpoint; the worker has skipped their batches): step numbers and
    // the clock go on from here.
    uint64_t first_step = 0;
    StepGate* gate = nullptr;
    std::function<void(uint64_t steps)> after_step;
    // worker.audit: each step adds 1 to row `audit_key` of this table.
    const pb::TableSpec* audit = nullptr;
    uint64_t audit_key = 0;
    // Consistency control; null: none (a plain asp run).
    ClockGate* clock = nullptr;
    int thread = 0;  // this trainer's compute thread, for `clock` and `gate`
    bool log_progress = true;
    // Counts every step; the thread that logs progress also records each
    // progress line in it. Null: not recorded.
    TrainingProgress* progress = nullptr;
    // data.assignment on_demand: hears of each batch whose pushes are
    // acknowledged, so that finished work units are reported.
    WorkFeed* feed = nullptr;
  };

  absl::StatusOr<TrainResult> Train(DataLoader* loader, const TrainHooks& hooks);
  // worker.audit: adds 1 to the step counter of hooks.audit (row audit_key).
  static KVClient::Ticket PushAuditCount(KVClient* client, const TrainHooks& hooks, uint64_t clock);
  absl::StatusOr<TrainResult> Train(DataLoader* loader);  // a plain run, no hooks

  // Scores every batch of `loader` in order; writes one probability per line
  // to `predictions_out` if it is not empty.
  absl::StatusOr<EvalResult> Evaluate(DataLoader* loader, const std::string& predictions_out);

 private:
  struct Step;
  // Called with a step's 1-based number before its batch is read; false
  // defers the step (a checkpoint pause is wanted first).
  using BeforePull = std::function<absl::StatusOr<bool>(uint64_t step)>;
  // Reads the next batch and issues its pulls: all of them, or (under
  // kReadYourWrites) only those of the keys the previous batch does not
  // have (batch.fresh_keys); IssuePulls(late) sends the rest.
  enum class Pipeline {
    kPrefetchAll,     // the next batch's pulls go out before this batch's compute (no pushes: evaluation)
    kReadYourWrites,  // as kPrefetchAll, but keys (and dense tables) this batch updates after its push
    kSerial,          // the next batch's pulls go out after this batch's body (bsp)
  };
  // `holding`: the thread holds a batch not yet trained (a prefetch); it
  // is deferred, not blocked, when the loader waits for the next work unit.
  absl::StatusOr<std::unique_ptr<Step>> BeginStep(DataLoader* loader, uint64_t number, const BeforePull& before_pull,
                                                  Pipeline pipeline, bool holding, bool* deferred);
  void IssuePulls(Step& step, bool late);
  std::vector<std::span<const float>> ViewParams(const Step& step) const;
  // The keys of table t for `batch`: its unique keys, or a dense table's blocks.
  const std::vector<uint64_t>& KeysOf(size_t t, const Batch& batch) const {
    return tables_[t].kind() == pb::TableSpec::DENSE ? dense_keys_[t] : batch.unique_keys;
  }
  class StepWalk;  // one ForEachStep() call (trainer.cc)
  // Runs `body` on every batch of `loader` once its parameters have arrived,
  // numbering steps from first_step + 1. `at_boundary` runs where the
  // thread holds no batch (checkpoint pauses); while `pause_wanted` says
  // so, the next batch is not prefetched, so that such a boundary comes.
  absl::Status ForEachStep(DataLoader* loader, const std::function<absl::Status(Step&)>& body, Pipeline pipeline,
                           uint64_t first_step = 0, const BeforePull& before_pull = nullptr,
                           const std::function<absl::Status()>& at_boundary = nullptr,
                           const std::function<bool()>& pause_wanted = nullptr);

  const Config& config_;
  KVClient* const client_;
  StepRunner* const runner_;
  const std::vector<pb::TableSpec> tables_;
  const bool bsp_;
  // The running Train()'s clock gate (null: none), for RequestClock().
  ClockGate* clock_gate_ = nullptr;
  bool training_ = false;  // Train() runs; Evaluate() sends no step clocks
  // Under bsp, while training, the number the servers know step `step` by
  // (0 otherwise: an evaluation's pulls read the finished model, the last
  // step's sums applied): the job's, which runs ahead of this worker's own
  // count by the clocks it skipped while it waited for work
  // (ClockGate::Rebase).
  uint64_t RequestClock(uint64_t step) const;
  DenseCache* const cache_;
  double network_wait_seconds_ = 0;  // of the current Train() or Evaluate()
  // The running Train() (null: none). BeginStep() settles it (trains what
  // the thread holds, waits for its pushes, takes a checkpoint's pause if
  // one is asked for) while the loader waits for the next work unit
  // (data.assignment on_demand).
  class TrainingRun;
  TrainingRun* run_ = nullptr;
  uint64_t last_push_mark_ = 0;  // cache_->NotePushes() after this trainer's last push
  std::vector<std::vector<uint64_t>> dense_keys_;  // per dense table: its block indices
  // Per table: whether its pushes carry each key's occurrences (the servers
  // admit new keys by count or probability: embedding.admission).
  std::vector<bool> counts_wanted_;
  // client_->Wait(ticket), timed into network_wait_seconds_.
  absl::Status WaitTimed(const KVClient::Ticket& ticket);
  // Pushes a computed step's gradients (and, with worker.audit, its count);
  // returns the pushes' tickets.
  std::vector<KVClient::Ticket> PushGradients(const Batch& batch, const StepOutput& out, const TrainHooks& hooks);
};

}  // namespace sparta

#endif  // SPARTA_WORKER_TRAINER_H_
