// DrivenSteps: the training loop of a worker whose steps a caller drives
// from outside, one batch at a time (the Python module: sparta.Worker).
// Trainer runs a model over the batches itself; here the caller takes each
// batch with Next(), pulls the rows it wants, computes, and pushes
// gradients, and DrivenSteps keeps the job's contract around that, as
// Trainer does for a built-in model:
//   - a step is one batch; Next() ends the previous step: its pushes (and the
//     worker.audit counter's) join the window of at most worker.max_inflight
//     unacknowledged steps (all of them acknowledged at once under bsp);
//   - a checkpoint's pause is taken at a step boundary with every push
//     acknowledged, so a restored job skips exactly the batches trained;
//   - under ssp/bsp a step's batch is handed out only when the slowest
//     worker is close enough (ClockGate), and bsp requests carry the step;
//   - progress (examples/s, loss) is logged and reported in heartbeats.
//
// A batch stays valid while the caller holds it (shared_ptr). Pull's `out`
// must stay valid until its ticket completes.
//
// Not thread-safe: one caller thread (it is compute thread 0 of the gate and
// the clock), except Wait(). The client it is given may be shared.
#ifndef SPARTA_WORKER_DRIVEN_STEPS_H_
#define SPARTA_WORKER_DRIVEN_STEPS_H_

#include <atomic>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta.pb.h"
#include "worker/data/data_loader.h"
#include "worker/kv_client.h"
#include "worker/progress_window.h"
#include "worker/push_window.h"
#include "worker/trainer.h"

namespace sparta {

class DrivenSteps {
 public:
  // `tables`: the job's tables as created on the servers; `hooks` as for
  // Trainer::Train (thread 0).
  DrivenSteps(const Config& config, KVClient* client, std::vector<pb::TableSpec> tables, DataLoader* loader,
              Trainer::TrainHooks hooks);
  DrivenSteps(const DrivenSteps&) = delete;
  DrivenSteps& operator=(const DrivenSteps&) = delete;

  // Ends the step in progress (if any) and begins the next: its batch, or
  // null when the input is done (call Finish then).
  absl::StatusOr<std::shared_ptr<const Batch>> Next();

  // The next step's batch, read ahead during this step so that the caller
  // can start pulling its rows early (the ones this step does not update:
  // unique_keys[0, fresh_keys)). Next() then returns it. Null when there is
  // nothing to read ahead: no step in progress, a checkpoint's pause wanted
  // (the step boundary must come holding nothing), ssp or bsp (the clock
  // decides when the next step may pull), the on_demand loader waiting for
  // work, or the end of the input.
  absl::StatusOr<std::shared_ptr<const Batch>> Peek();

  // Requests of the step in progress (or, outside one, of no step), by
  // table index. A dense table's keys are its block numbers.
  KVClient::Ticket Pull(size_t table, std::span<const uint64_t> keys, float* out);
  // `counts` (empty or one per key): occurrences, for embedding.admission.
  KVClient::Ticket Push(size_t table, std::span<const uint64_t> keys, std::span<const float> grads,
                        std::span<const uint32_t> counts = {});
  // Blocks until `ticket` completes; the time counts as network wait.
  // Thread-safe (a Python future may be waited on from any thread).
  absl::Status Wait(const KVClient::Ticket& ticket);

  // The summed loss of the step in progress, for the progress log.
  void RecordLoss(double summed_loss) { step_loss_ += summed_loss; }

  // Ends the last step, waits for every push and leaves the gate and the
  // clock. Call once, after Next() returned null.
  absl::StatusOr<Trainer::TrainResult> Finish();

  const std::vector<pb::TableSpec>& tables() const { return tables_; }

 private:
  absl::Status EndStep();
  // At a boundary holding no batch: every push acknowledged, then the
  // checkpoint's pause if one is asked for.
  absl::Status Settle();
  uint64_t RequestClock() const;

  const Config& config_;
  KVClient* const client_;
  const std::vector<pb::TableSpec> tables_;
  DataLoader* const loader_;
  const Trainer::TrainHooks hooks_;
  const bool bsp_;
  PushWindow pushes_;
  ProgressWindow progress_;
  Trainer::TrainResult result_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<double> network_wait_seconds_{0};  // Wait()'s, from any thread

  std::shared_ptr<const Batch> batch_;  // the step in progress; null between steps
  std::shared_ptr<const Batch> ahead_;  // the next step's, read by Peek()
  bool input_done_ = false;             // Peek() met the end of the input
  uint64_t step_ = 0;                   // its number (first_step + steps begun)
  std::vector<KVClient::Ticket> step_pushes_;
  double step_loss_ = 0;
  bool finished_ = false;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_DRIVEN_STEPS_H_
