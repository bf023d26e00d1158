// WorkFeed: a worker's side of data.assignment: on_demand. The data loader
// asks it for the next work unit (the scheduler grants one, see
// scheduler/work_dispatcher.h) and tells it of each batch it makes of a
// unit; the compute threads tell it when a batch's pushes are acknowledged.
// A unit whose batches are all acknowledged is reported done (WORK_DONE):
// only then may the scheduler forget it, since a worker that dies before
// takes its unacknowledged pushes with it.
//
// It also says how far the worker is into each unit (what its heartbeats
// carry): the bytes up to which every batch is acknowledged, in the unit's
// order, though compute threads finish batches out of order. If the worker
// is lost, its units go back to the pool from there, so that a death costs
// only what was in flight.
//
// Thread-safe: the loader's thread, every compute thread and the scheduler
// client's thread (heartbeats) call it.
#ifndef SPARTA_WORKER_WORK_FEED_H_
#define SPARTA_WORKER_WORK_FEED_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/input_split.h"
#include "sparta.pb.h"

namespace sparta {

class WorkFeed {
 public:
  struct Unit {
    uint64_t id = 0;
    uint32_t epoch = 0;  // 0-based
    FileRange range;
  };
  // Asks the scheduler for the next unit, naming the units this worker
  // still holds (not yet reported done).
  using Ask = std::function<void(const std::vector<uint64_t>& held)>;
  // Waits for the answer (nullopt: every unit is done).
  using Await = std::function<absl::StatusOr<std::optional<pb::WorkRange>>()>;
  // Tells the scheduler that unit `id` is trained.
  using ReportDone = std::function<void(uint64_t id)>;

  // `ask` and `report_done` are called under the feed's lock, so that a
  // request never overtakes the report of a unit it leaves out; they must
  // not block.
  WorkFeed(Ask ask, Await await, ReportDone report_done)
      : ask_(std::move(ask)), await_(std::move(await)), report_done_(std::move(report_done)) {}

  // The loader: the next unit to read; nullopt when there is none left.
  absl::StatusOr<std::optional<Unit>> Next();
  // The loader: a batch of `unit` with `examples` examples, ending
  // `end_bytes` from the unit's start (a line boundary), is about to be
  // queued. Returns its place among the unit's batches.
  uint32_t Emitted(uint64_t unit, uint64_t end_bytes, uint64_t examples);
  // The loader: every batch of `unit` is queued (maybe none).
  void Sealed(uint64_t unit);
  // A compute thread: batch `unit_batch` of `unit` is trained and its
  // pushes acknowledged.
  void Trained(uint64_t unit, uint32_t unit_batch);

  // How far this worker is into each unit not yet reported done.
  std::map<uint64_t, pb::UnitProgress> InProgress() const;
  uint64_t units_done() const;

 private:
  struct Batch {
    uint64_t end_bytes = 0;
    uint64_t examples = 0;
    bool trained = false;
  };
  struct Progress {
    std::deque<Batch> pending;  // batches after the acknowledged prefix, in order
    uint32_t first = 0;         // place of pending.front() among the unit's batches
    uint64_t trained_bytes = 0;
    uint64_t trained_examples = 0;
    bool sealed = false;
  };
  // True (and forgets the unit) if `unit` is wholly trained; mu_ held.
  bool FinishedLocked(uint64_t unit);

  const Ask ask_;
  const Await await_;
  const ReportDone report_done_;
  mutable std::mutex mu_;
  std::map<uint64_t, Progress> units_;  // guarded by mu_
  uint64_t units_done_ = 0;             // guarded by mu_
};

}  // namespace sparta

#endif  // SPARTA_WORKER_WORK_FEED_H_
