#include "worker/driven_steps.h"

#include <chrono>

#include "common/logging.h"
#include "common/status_macros.h"

namespace sparta {

using Clock = std::chrono::steady_clock;

DrivenSteps::DrivenSteps(const Config& config, KVClient* client, std::vector<pb::TableSpec> tables,
                         DataLoader* loader, Trainer::TrainHooks hooks)
    : config_(config),
      client_(client),
      tables_(std::move(tables)),
      loader_(loader),
      hooks_(std::move(hooks)),
      bsp_(config.worker.consistency_mode == Consistency::kBsp),
      pushes_(
          hooks_.clock, hooks_.thread, [this](const KVClient::Ticket& t) { return Wait(t); },
          hooks_.feed == nullptr ? PushWindow::Retired()
                                 : [feed = hooks_.feed](uint64_t unit, uint32_t unit_batch) {
                                     feed->Trained(unit, unit_batch);
                                   }),
      progress_(config, hooks_.log_progress, hooks_.progress,
                static_cast<double>(loader->bytes_per_epoch()) * config.data.epochs),
      step_(hooks_.first_step) {}

uint64_t DrivenSteps::RequestClock() const {
  // bsp: servers sum each step's pushes by the job's step number (see
  // Trainer::RequestClock); outside a step (evaluation) no clock.
  if (!bsp_ || batch_ == nullptr) return 0;
  return step_ + (hooks_.clock != nullptr ? hooks_.clock->offset() : 0);
}

KVClient::Ticket DrivenSteps::Pull(size_t table, std::span<const uint64_t> keys, float* out) {
  return client_->Pull(tables_[table].id(), tables_[table].dim(), keys, out, RequestClock());
}

KVClient::Ticket DrivenSteps::Push(size_t table, std::span<const uint64_t> keys, std::span<const float> grads,
                                   std::span<const uint32_t> counts) {
  KVClient::Ticket ticket =
      client_->Push(tables_[table].id(), tables_[table].dim(), keys, grads, RequestClock(), counts, step_);
  if (batch_ != nullptr) step_pushes_.push_back(ticket);
  return ticket;
}

absl::Status DrivenSteps::Wait(const KVClient::Ticket& ticket) {
  double blocked = 0;
  absl::Status status = client_->Wait(ticket, &blocked);
  network_wait_seconds_.fetch_add(blocked, std::memory_order_relaxed);
  return status;
}

absl::Status DrivenSteps::EndStep() {
  if (batch_ == nullptr) return absl::OkStatus();
  if (hooks_.audit != nullptr) step_pushes_.push_back(Trainer::PushAuditCount(client_, hooks_, RequestClock()));
  progress_.StartBatch(batch_->epoch);
  pushes_.Add(step_, std::move(step_pushes_), batch_->unit, batch_->unit_batch);
  step_pushes_.clear();
  // bsp: a step is over only when its pushes are in.
  SPARTA_RETURN_IF_ERROR(pushes_.Trim(bsp_ ? 0 : static_cast<size_t>(config_.worker.max_inflight)));
  ++result_.steps;
  if (hooks_.after_step) hooks_.after_step(result_.steps);
  result_.examples += batch_->size;
  progress_.AddBatch(*batch_, step_loss_, {}, result_.examples, network_wait_seconds_.load(std::memory_order_relaxed));
  step_loss_ = 0;
  batch_.reset();
  return absl::OkStatus();
}

absl::Status DrivenSteps::Settle() {
  if (hooks_.gate == nullptr || !hooks_.gate->pause_requested()) return absl::OkStatus();
  SPARTA_RETURN_IF_ERROR(pushes_.Drain());
  return hooks_.gate->PauseHere(hooks_.thread, result_.steps);
}

absl::StatusOr<std::shared_ptr<const Batch>> DrivenSteps::Peek() {
  if (ahead_ != nullptr) return ahead_;
  const bool asp = hooks_.clock == nullptr || hooks_.clock->staleness() < 0;
  if (batch_ == nullptr || input_done_ || finished_ || !asp ||
      (hooks_.gate != nullptr && hooks_.gate->pause_requested())) {
    return std::shared_ptr<const Batch>();
  }
  bool starved = false;
  SPARTA_ASSIGN_OR_RETURN(std::unique_ptr<Batch> batch, loader_->Next(&starved));
  if (batch == nullptr && !starved) input_done_ = true;
  ahead_ = std::move(batch);
  return ahead_;
}

absl::StatusOr<std::shared_ptr<const Batch>> DrivenSteps::Next() {
  if (finished_) return absl::FailedPreconditionError("the training steps are finished");
  SPARTA_RETURN_IF_ERROR(EndStep());
  if (ahead_ != nullptr || input_done_) {
    // Read during the last step: it is trained before any pause (which
    // waits for the boundary after it), as Trainer does with a prefetch.
    if (ahead_ == nullptr) return std::shared_ptr<const Batch>();
    // asp (Peek reads ahead only then): the clock never waits, but it
    // records the step's staleness.
    if (hooks_.clock != nullptr) SPARTA_RETURN_IF_ERROR(hooks_.clock->WaitForStep(step_ + 1).status());
    step_ += 1;
    batch_ = std::move(ahead_);
    return batch_;
  }
  while (true) {
    SPARTA_RETURN_IF_ERROR(Settle());
    const uint64_t next = step_ + 1;
    SPARTA_ASSIGN_OR_RETURN(const bool go, pushes_.AwaitTurn(next));
    if (!go) continue;  // woken for a checkpoint: the pause first
    bool starved = false;
    auto batch = loader_->Next(&starved);
    if (batch.ok() && starved) {
      // The loader waits for the scheduler's next unit (on_demand); a
      // checkpoint's pause may come meanwhile and is taken here.
      bool timed_out = true;
      while (timed_out) {
        SPARTA_RETURN_IF_ERROR(Settle());
        batch = loader_->NextWithin(std::chrono::milliseconds(100), &timed_out);
        if (!batch.ok()) break;
      }
    }
    if (!batch.ok()) return batch.status();
    if (*batch == nullptr) return std::shared_ptr<const Batch>();
    step_ = next;
    batch_ = std::shared_ptr<const Batch>(*std::move(batch));
    return batch_;
  }
}

absl::StatusOr<Trainer::TrainResult> DrivenSteps::Finish() {
  if (finished_) return absl::FailedPreconditionError("the training steps are already finished");
  SPARTA_RETURN_IF_ERROR(EndStep());
  SPARTA_RETURN_IF_ERROR(pushes_.Drain());
  finished_ = true;
  if (hooks_.clock != nullptr) hooks_.clock->Advance(hooks_.thread, ClockGate::kFinished);
  if (hooks_.gate != nullptr) hooks_.gate->Finished(hooks_.thread, result_.steps);
  result_.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  result_.last_epoch_loss = progress_.epoch_loss();
  result_.network_wait_seconds = network_wait_seconds_.load(std::memory_order_relaxed);
  if (hooks_.log_progress) {
    spdlog::info("training done: {} examples in {:.2f} s ({:.0f} ex/s), driven from outside, last epoch logloss "
                 "{:.5f}; {:.1f}% of the time waiting on the network",
                 result_.examples, result_.seconds, result_.examples / std::max(result_.seconds, 1e-9),
                 result_.last_epoch_loss, 100 * result_.network_wait_seconds / std::max(result_.seconds, 1e-9));
  }
  return result_;
}

}  // namespace sparta
