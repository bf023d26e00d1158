#include "worker/trainer.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/eval_metrics.h"
#include "worker/progress_window.h"
#include "worker/push_window.h"

namespace sparta {

using Clock = std::chrono::steady_clock;

// One batch on its way through the pipeline, with the parameters pulled for it.
struct Trainer::Step {
  uint64_t number = 0;  // 1-based, counting restored steps
  uint32_t early_keys = 0;  // unique_keys[0, early_keys) are pulled before the previous step's push
  std::unique_ptr<Batch> batch;
  std::vector<std::vector<float>> params;  // per table; dense tables padded to whole blocks
  // Per dense table, when it comes from the worker's DenseCache instead of `params`.
  std::vector<std::shared_ptr<const DenseCache::Snapshot>> shared;
  bool cached = false;
  const std::vector<float>& values(size_t t) const { return shared[t] ? shared[t]->values : params[t]; }
  std::vector<KVClient::Ticket> pulls;
};

// One Train() call, step by step as ForEachStep() drives it: the steps
// handed to the runner whose gradients are not pushed yet, the window of
// unacknowledged pushes, the progress window and the result. It lives on
// the trainer's thread for the length of the call.
class Trainer::TrainingRun {
 public:
  TrainingRun(Trainer& trainer, DataLoader* loader, const TrainHooks& hooks)
      : trainer_(trainer),
        hooks_(hooks),
        pushes_(hooks.clock, hooks.thread, [&trainer](const KVClient::Ticket& t) { return trainer.WaitTimed(t); },
                hooks.feed == nullptr ? PushWindow::Retired()
                                      : [feed = hooks.feed](uint64_t unit, uint32_t unit_batch) {
                                          feed->Trained(unit, unit_batch);
                                        }),
        progress_(trainer.config_, hooks.log_progress, hooks.progress,
                  static_cast<double>(loader->bytes_per_epoch()) * trainer.config_.data.epochs) {
    // A runner deeper than 1 (a GPU's) computes a step while the previous
    // one's gradients are copied out and pushed, so each step trains on
    // parameters one push older; with no staleness allowed (bsp, or ssp
    // with bound 0) the run keeps it at one step, since the clock would
    // wait for a push still inside the runner.
    const bool no_staleness = trainer.bsp_ || (hooks.clock != nullptr && hooks.clock->staleness() == 0);
    depth_ = no_staleness ? 1 : static_cast<size_t>(trainer.runner_->max_depth());
    // bsp: a step is over only when its pushes are in.
    in_flight_ = trainer.bsp_ ? 0 : static_cast<size_t>(trainer.config_.worker.max_inflight);
  }

  // A step whose parameters have arrived goes to the runner; while the
  // runner holds `depth_` steps, the oldest is collected and pushed.
  absl::Status Submit(Step& step) {
    SPARTA_RETURN_IF_ERROR(
        trainer_.runner_->Submit(step.number, *step.batch, trainer_.ViewParams(step), /*want_grads=*/true));
    // The runner has read the parameters; the batch's keys are needed until its push.
    computing_.push_back({step.number, std::move(step.batch)});
    while (computing_.size() >= depth_) SPARTA_RETURN_IF_ERROR(FinishOldest());
    return absl::OkStatus();
  }

  // Before step `step` pulls: its view of the parameters may lag the
  // slowest worker by at most the staleness bound.
  absl::StatusOr<bool> AwaitTurn(uint64_t step) { return pushes_.AwaitTurn(step); }
  bool PauseWanted() const { return hooks_.gate != nullptr && hooks_.gate->pause_requested(); }

  // A checkpoint cut, if one is asked for: everything this worker pushed so
  // far must be in it.
  absl::Status PauseIfAsked() {
    if (!PauseWanted()) return absl::OkStatus();
    SPARTA_RETURN_IF_ERROR(Flush());
    return hooks_.gate->PauseHere(hooks_.thread, result_.steps);
  }

  // Trains what the thread holds, waits for its pushes and takes a pause
  // if one is asked for (while the loader waits for a work unit).
  absl::Status Settle() {
    SPARTA_RETURN_IF_ERROR(Flush());
    return PauseIfAsked();
  }

  // After the last step: every push in, the clock and the gate told.
  absl::StatusOr<TrainResult> Finish() {
    SPARTA_RETURN_IF_ERROR(Flush());
    if (hooks_.clock != nullptr) hooks_.clock->Advance(hooks_.thread, ClockGate::kFinished);
    if (hooks_.gate != nullptr) hooks_.gate->Finished(hooks_.thread, result_.steps);
    result_.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    result_.last_epoch_loss = progress_.epoch_loss();
    result_.network_wait_seconds = trainer_.network_wait_seconds_;
    return result_;
  }

 private:
  struct Computing {
    uint64_t step;
    std::unique_ptr<Batch> batch;
  };

  // Collects the oldest computing step from the runner and pushes its gradients.
  absl::Status FinishOldest() {
    SPARTA_ASSIGN_OR_RETURN(const StepOutput out, trainer_.runner_->Collect());
    const std::unique_ptr<Batch> batch = std::move(computing_.front().batch);
    computing_.pop_front();
    progress_.StartBatch(batch->epoch);
    pushes_.Add(out.step, trainer_.PushGradients(*batch, out, hooks_), batch->unit, batch->unit_batch);
    if (trainer_.cache_ != nullptr) trainer_.last_push_mark_ = trainer_.cache_->NotePushes();
    SPARTA_RETURN_IF_ERROR(pushes_.Trim(in_flight_));
    ++result_.steps;
    if (hooks_.after_step) hooks_.after_step(result_.steps);
    result_.examples += batch->size;
    progress_.AddBatch(*batch, out.loss, out.probs, result_.examples, trainer_.network_wait_seconds_);
    return absl::OkStatus();
  }

  // Every step in the runner collected and pushed, every push acknowledged.
  absl::Status Flush() {
    while (!computing_.empty()) SPARTA_RETURN_IF_ERROR(FinishOldest());
    return pushes_.Drain();
  }

  Trainer& trainer_;
  const TrainHooks& hooks_;
  const Clock::time_point start_ = Clock::now();
  PushWindow pushes_;
  ProgressWindow progress_;
  std::deque<Computing> computing_;  // submitted to the runner, not yet pushed
  size_t depth_ = 1;                 // steps the runner may hold
  size_t in_flight_ = 0;             // unacknowledged pushes allowed
  TrainResult result_;
};

Trainer::Trainer(const Config& config, KVClient* client, StepRunner* runner, std::vector<pb::TableSpec> tables,
                 DenseCache* cache)
    : config_(config),
      client_(client),
      runner_(runner),
      tables_(std::move(tables)),
      bsp_(config.worker.consistency_mode == Consistency::kBsp),
      cache_(cache),
      dense_keys_(tables_.size()) {
  for (size_t t = 0; t < tables_.size(); ++t) {
    if (tables_[t].kind() == pb::TableSpec::DENSE) dense_keys_[t] = DenseBlockKeys(tables_[t]);
    const TablePolicyConfig& policy = config.embedding.For(tables_[t].name());
    counts_wanted_.push_back(tables_[t].kind() == pb::TableSpec::SPARSE && tables_[t].name().rfind("sparta.", 0) != 0 &&
                             (policy.admission_min_count > 1 || policy.admission_probability < 1));
  }
}

namespace {
// In how many of the batch's examples each of batch.unique_keys occurs.
void CountKeys(const Batch& batch, std::vector<uint32_t>* counts) {
  counts->assign(batch.unique_keys.size(), 0);
  std::vector<uint32_t> last(batch.unique_keys.size(), ~uint32_t{0});  // the example that last counted it
  for (uint32_t e = 0; e < batch.size; ++e) {
    for (uint32_t f = batch.offsets[e]; f < batch.offsets[e + 1]; ++f) {
      const uint32_t slot = batch.slots[f];
      if (last[slot] == e) continue;
      last[slot] = e;
      ++(*counts)[slot];
    }
  }
}
}  // namespace

absl::StatusOr<std::unique_ptr<Trainer::Step>> Trainer::BeginStep(DataLoader* loader, uint64_t number,
                                                                  const BeforePull& before_pull,
                                                                  Pipeline pipeline, bool holding, bool* deferred) {
  const bool split = pipeline == Pipeline::kReadYourWrites;
  // The gate comes before the read: compute threads sharing a loader must
  // not take a later step's batch while another is still to take this
  // step's (under bsp a step is exactly the next `threads` batches).
  *deferred = false;
  if (before_pull) {
    SPARTA_ASSIGN_OR_RETURN(const bool go, before_pull(number));
    if (!go) {
      *deferred = true;
      return std::unique_ptr<Step>();
    }
  }
  bool starved = false;
  auto batch = loader->Next(&starved);
  if (batch.ok() && starved) {
    // The loader waits for the scheduler's next unit, which may wait for
    // this thread's batches to be done: train those first.
    if (holding) {
      *deferred = true;
      return std::unique_ptr<Step>();
    }
    // Holding nothing, it waits for the unit; a checkpoint's pause may
    // come meanwhile, and this thread takes it where it is (Settle).
    bool timed_out = true;
    while (timed_out) {
      if (run_ != nullptr) SPARTA_RETURN_IF_ERROR(run_->Settle());
      batch = loader->NextWithin(std::chrono::milliseconds(100), &timed_out);
      if (!batch.ok()) break;
    }
  }
  if (!batch.ok()) return batch.status();
  if (*batch == nullptr) return std::unique_ptr<Step>();
  auto step = std::make_unique<Step>();
  step->number = number;
  step->batch = *std::move(batch);
  step->early_keys = split ? step->batch->fresh_keys : static_cast<uint32_t>(step->batch->unique_keys.size());
  step->params.resize(tables_.size());
  step->shared.resize(tables_.size());
  // Evaluation reads the final model, not a copy a compute thread may hold.
  step->cached = cache_ != nullptr && pipeline != Pipeline::kPrefetchAll;
  for (size_t t = 0; t < tables_.size(); ++t) {
    if (step->cached && tables_[t].kind() == pb::TableSpec::DENSE) continue;
    step->params[t].resize(KeysOf(t, *step->batch).size() * tables_[t].dim());
  }
  IssuePulls(*step, /*late=*/false);
  if (!split) IssuePulls(*step, /*late=*/true);
  return step;
}

uint64_t Trainer::RequestClock(uint64_t step) const {
  if (!bsp_ || !training_) return 0;
  return step + (clock_gate_ != nullptr ? clock_gate_->offset() : 0);
}

void Trainer::IssuePulls(Step& step, bool late) {
  const uint64_t clock = RequestClock(step.number);
  for (size_t t = 0; t < tables_.size(); ++t) {
    const bool dense = tables_[t].kind() == pb::TableSpec::DENSE;
    std::span<const uint64_t> keys = KeysOf(t, *step.batch);
    const uint32_t dim = tables_[t].dim();
    size_t from = 0;
    if (!dense) {
      // Early: the keys the previous batch does not update; late: the others.
      from = late ? step.early_keys : 0;
      keys = late ? keys.subspan(step.early_keys) : keys.first(step.early_keys);
    } else if (!late) {
      continue;  // every step updates a dense table
    } else if (step.cached) {
      // As fresh as this thread's last push; under bsp (after the step's
      // barrier), as fresh as every push posted so far.
      const uint64_t mark = bsp_ ? cache_->mark() : last_push_mark_;
      step.shared[t] = cache_->Get(t, mark, clock);
      step.pulls.push_back(step.shared[t]->pull);
      continue;
    }
    if (keys.empty()) continue;
    step.pulls.push_back(client_->Pull(tables_[t].id(), dim, keys, step.params[t].data() + from * dim, clock));
  }
}

// One ForEachStep() call: reads the loader's batches in turn, issues each
// one's pulls (the next batch's before this one's body, as the pipeline
// allows) and runs the body on each once its parameters are in. It holds
// at most two steps: the one being trained and the one prefetched.
class Trainer::StepWalk {
 public:
  StepWalk(Trainer& trainer, DataLoader* loader, Pipeline pipeline, uint64_t first_step,
           const BeforePull& before_pull, const std::function<absl::Status()>& at_boundary,
           const std::function<bool()>& pause_wanted)
      : trainer_(trainer),
        loader_(loader),
        pipeline_(pipeline),
        number_(first_step),
        before_pull_(before_pull),
        at_boundary_(at_boundary),
        pause_wanted_(pause_wanted) {}

  // The client's I/O thread writes pulled rows into a step until its pulls
  // complete, so a walk that ends early (bad data, an abort) waits for them
  // before the steps' buffers are freed. Every pull completes: answered,
  // failed by an abort, or past worker.request_timeout.
  ~StepWalk() {
    for (Step* step : {current_.get(), next_.get()}) {
      if (step == nullptr) continue;
      for (const auto& ticket : step->pulls) (void)trainer_.client_->Wait(ticket);
    }
  }
  StepWalk(const StepWalk&) = delete;
  StepWalk& operator=(const StepWalk&) = delete;

  absl::Status Run(const std::function<absl::Status(Step&)>& body) {
    SPARTA_RETURN_IF_ERROR(BeginHoldingNothing(&current_));
    while (current_ != nullptr) {
      // Prefetch: the next batch's pull goes out before this batch's compute.
      // Reading one's own writes, only its keys this batch does not update
      // go now; the rest follow this batch's push on the same sockets, so
      // the servers answer them with this batch's update applied. No
      // prefetch when a pause is wanted: the thread must reach a boundary
      // holding nothing.
      bool prefetched = false;
      if (pipeline_ != Pipeline::kSerial && !(pause_wanted_ && pause_wanted_())) {
        bool deferred = false;
        SPARTA_RETURN_IF_ERROR(Begin(&next_, /*holding=*/true, &deferred));
        prefetched = !deferred;
      }
      for (const auto& ticket : current_->pulls) SPARTA_RETURN_IF_ERROR(trainer_.WaitTimed(ticket));
      SPARTA_RETURN_IF_ERROR(body(*current_));
      if (prefetched) {
        if (next_ != nullptr && pipeline_ == Pipeline::kReadYourWrites) trainer_.IssuePulls(*next_, /*late=*/true);
      } else {
        SPARTA_RETURN_IF_ERROR(BeginHoldingNothing(&next_));
      }
      current_ = std::move(next_);
    }
    return absl::OkStatus();
  }

 private:
  // Reads the next batch into `*step` and issues its pulls (under
  // kReadYourWrites only the early ones), unless the gate defers it (a
  // pause is wanted first).
  absl::Status Begin(std::unique_ptr<Step>* step, bool holding, bool* deferred) {
    SPARTA_ASSIGN_OR_RETURN(*step,
                            trainer_.BeginStep(loader_, number_ + 1, before_pull_, pipeline_, holding, deferred));
    if (*step != nullptr) ++number_;
    return absl::OkStatus();
  }

  // At a step boundary holding no batch: pause if asked, then read the next
  // batch and issue all its pulls. Pausing only here makes every batch this
  // thread has read a trained one, so a checkpoint's step count is exactly
  // the batches to skip on restore, whatever the number of threads.
  absl::Status BeginHoldingNothing(std::unique_ptr<Step>* step) {
    while (true) {
      if (at_boundary_) SPARTA_RETURN_IF_ERROR(at_boundary_());
      bool deferred = false;
      SPARTA_RETURN_IF_ERROR(Begin(step, /*holding=*/false, &deferred));
      if (deferred) continue;
      if (*step != nullptr && pipeline_ == Pipeline::kReadYourWrites) trainer_.IssuePulls(**step, /*late=*/true);
      return absl::OkStatus();
    }
  }

  Trainer& trainer_;
  DataLoader* const loader_;
  const Pipeline pipeline_;
  uint64_t number_;  // the last step begun (1-based, counting restored steps)
  const BeforePull& before_pull_;
  const std::function<absl::Status()>& at_boundary_;
  const std::function<bool()>& pause_wanted_;
  std::unique_ptr<Step> current_, next_;  // being trained; prefetched
};

absl::Status Trainer::ForEachStep(DataLoader* loader, const std::function<absl::Status(Step&)>& body,
                                  Pipeline pipeline, uint64_t first_step, const BeforePull& before_pull,
                                  const std::function<absl::Status()>& at_boundary,
                                  const std::function<bool()>& pause_wanted) {
  StepWalk walk(*this, loader, pipeline, first_step, before_pull, at_boundary, pause_wanted);
  return walk.Run(body);
}

absl::Status Trainer::WaitTimed(const KVClient::Ticket& ticket) {
  return client_->Wait(ticket, &network_wait_seconds_);
}

std::vector<std::span<const float>> Trainer::ViewParams(const Step& step) const {
  std::vector<std::span<const float>> spans;
  for (size_t t = 0; t < tables_.size(); ++t) spans.emplace_back(step.values(t));
  return spans;
}

absl::StatusOr<Trainer::TrainResult> Trainer::Train(DataLoader* loader) { return Train(loader, TrainHooks()); }

absl::StatusOr<Trainer::TrainResult> Trainer::Train(DataLoader* loader, const TrainHooks& hooks) {
  network_wait_seconds_ = 0;
  clock_gate_ = hooks.clock;
  training_ = true;
  TrainingRun run(*this, loader, hooks);
  run_ = &run;
  const absl::Status walked =
      ForEachStep(loader, std::bind_front(&TrainingRun::Submit, &run),
                  bsp_ ? Pipeline::kSerial : Pipeline::kReadYourWrites, hooks.first_step,
                  std::bind_front(&TrainingRun::AwaitTurn, &run), std::bind_front(&TrainingRun::PauseIfAsked, &run),
                  std::bind_front(&TrainingRun::PauseWanted, &run));
  run_ = nullptr;  // it ends with this call
  SPARTA_RETURN_IF_ERROR(walked);
  SPARTA_ASSIGN_OR_RETURN(TrainResult result, run.Finish());
  if (hooks.log_progress) {
    spdlog::info("training done: {} examples in {:.2f} s ({:.0f} ex/s) on {}, last epoch logloss {:.5f}; {:.1f}% of "
                 "the time waiting on the network",
                 result.examples, result.seconds, result.examples / std::max(result.seconds, 1e-9),
                 runner_->backend_name(), result.last_epoch_loss,
                 100 * result.network_wait_seconds / std::max(result.seconds, 1e-9));
  }
  return result;
}

std::vector<KVClient::Ticket> Trainer::PushGradients(const Batch& batch, const StepOutput& out,
                                                      const TrainHooks& hooks) {
  std::vector<KVClient::Ticket> tickets;
  const uint64_t request_clock = RequestClock(out.step);
  std::vector<uint32_t> counts;
  for (size_t t = 0; t < tables_.size(); ++t) {
    if (counts_wanted_[t] && counts.empty()) CountKeys(batch, &counts);
    tickets.push_back(client_->Push(tables_[t].id(), tables_[t].dim(), KeysOf(t, batch), out.grads[t], request_clock,
                                    counts_wanted_[t] ? std::span<const uint32_t>(counts) : std::span<const uint32_t>(),
                                    out.step));
  }
  if (hooks.audit != nullptr) tickets.push_back(PushAuditCount(client_, hooks, request_clock));
  return tickets;
}

KVClient::Ticket Trainer::PushAuditCount(KVClient* client, const TrainHooks& hooks, uint64_t clock) {
  // SGD with learning rate 1 on a gradient of -1: the row counts pushes.
  static const float kMinusOne = -1.0f;
  return client->Push(hooks.audit->id(), 1, {&hooks.audit_key, 1}, {&kMinusOne, 1}, clock);
}

absl::StatusOr<Trainer::EvalResult> Trainer::Evaluate(DataLoader* loader, const std::string& predictions_out) {
  training_ = false;
  std::vector<float> probs, labels;
  SPARTA_RETURN_IF_ERROR(ForEachStep(
      loader,
      [&](Step& step) {
    const Batch& batch = *step.batch;
    SPARTA_RETURN_IF_ERROR(runner_->Submit(step.number, batch, ViewParams(step), /*want_grads=*/false));
    SPARTA_ASSIGN_OR_RETURN(const StepOutput out, runner_->Collect());
    probs.insert(probs.end(), out.probs.begin(), out.probs.end());
    labels.insert(labels.end(), batch.labels.begin(), batch.labels.end());
    return absl::OkStatus();
      },
      Pipeline::kPrefetchAll));
  EvalResult result;
  result.rows = probs.size();
  result.auc = Auc(probs, labels);
  result.logloss = MeanLogLoss(probs, labels);
  if (!predictions_out.empty()) SPARTA_RETURN_IF_ERROR(WritePredictions(predictions_out, probs));
  return result;
}

}  // namespace sparta
