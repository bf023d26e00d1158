// WorkDispatcher: the scheduler's side of data.assignment: on_demand. It
// owns the job's WorkPool (scheduler/work_pool.h), answers each worker's
// WORK_REQUEST with its next unit, holds a request while every remaining
// unit is in flight elsewhere (one of them may yet come back), and gives a
// lost worker's units back to the pool, counting what of them that worker
// had already trained (examples_retrained).
//
// It owns no socket: what to send collects in an outbox of (routing id,
// header) that the coordinator forwards. Workers are named by node id,
// which a restarted worker does not share with the one it replaces.
//
// Not thread-safe: the scheduler's one thread calls everything.
#ifndef SPARTA_SCHEDULER_WORK_DISPATCHER_H_
#define SPARTA_SCHEDULER_WORK_DISPATCHER_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "scheduler/work_pool.h"
#include "sparta.pb.h"

namespace sparta {

class WorkDispatcher {
 public:
  struct Outgoing {
    std::string routing_id;
    pb::Header header;
  };

  explicit WorkDispatcher(WorkPool pool) : pool_(std::move(pool)) {}
  // The pool of `config`'s data.train: its files (the scheduler must see
  // them, as the workers do), cut into data.split_size units, data.epochs
  // times over. An input with no byte to read is an error.
  static absl::StatusOr<WorkDispatcher> ForJob(const Config& config);

  // data.follow: from now on the pool waits for more input when empty.
  void Follow() { pool_.set_following(true); }
  // data.follow: takes in the files under data.train that arrived since the
  // last look (ListArrivedInputs), and answers the requests held for want
  // of a unit. Returns the files taken in.
  absl::StatusOr<std::vector<WorkPool::InputFile>> TakeInArrived(const Config& config);

  // Worker `worker` (reachable at `routing_id`) asks for its next unit.
  // `held`, if given: the units it still holds (not reported done). A unit
  // in flight to it that it does not hold is, in a request `resent` to a
  // scheduler that took over, one granted that never reached it (the old
  // scheduler died between saving the grant and sending it): that unit is
  // the answer. In any other request it is one the worker trained, whose
  // WORK_DONE the old scheduler got but never saved: it is done.
  void OnRequest(uint32_t worker, const std::string& routing_id, const std::vector<uint64_t>* held = nullptr,
                 bool resent = false);
  // Worker `worker` has trained unit `id`. A report for a unit the worker
  // no longer holds (resent to a restarted scheduler, or from before its
  // loss) changes nothing.
  void OnDone(uint32_t worker, uint64_t id);
  // Worker `worker` is gone. `last` is its last heartbeat's progress: how
  // far it was into each of its units, which go back to the pool from
  // there; the examples it had taken past that point are trained again.
  // Returns how many units (or their remainders) went back to the pool.
  size_t OnLost(uint32_t worker, const pb::WorkerProgress& last);

  // The whole dispatcher but its held requests (a worker resends its
  // request to a restarted scheduler), and back.
  pb::WorkPoolState ToState() const;
  static WorkDispatcher FromState(const pb::WorkPoolState& state);

  // Worker `worker` is draining (sparta-ctl drain): it gets no more units;
  // its requests are answered at once with a grant of no unit whose error
  // says why (which tells the worker to leave, see WORK_GRANT).
  void Drain(uint32_t worker);

  std::vector<Outgoing> TakeOutbox() { return std::exchange(outbox_, {}); }

  bool finished() const { return pool_.finished(); }
  uint64_t units_done() const { return units_done_; }
  uint64_t examples_retrained() const { return examples_retrained_; }
  uint64_t units_released() const { return units_released_; }
  size_t waiting() const { return waiting_.size(); }
  // Whether worker `worker` is idle: its request is held and it holds no
  // unit (it has trained everything it was given).
  bool Idle(uint32_t worker) const;
  const WorkPool& pool() const { return pool_; }

 private:
  // Answers held requests while there is something to answer with.
  void AnswerWaiting();
  static pb::Header GrantOf(const WorkPool::Unit& unit);
  void AnswerDrained(const std::string& routing_id);
  // Takes the next unit for `worker`; false when it must wait.
  bool Grant(uint32_t worker, const std::string& routing_id);

  WorkPool pool_;
  std::map<uint32_t, std::string> waiting_;  // worker -> routing id, requests held
  std::set<uint32_t> draining_;
  std::vector<Outgoing> outbox_;
  uint64_t units_done_ = 0;
  uint64_t examples_retrained_ = 0;
  uint64_t units_released_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_WORK_DISPATCHER_H_
