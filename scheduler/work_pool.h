// WorkPool: the job's training input cut into work units that the scheduler
// hands to workers one at a time, when they ask, instead of a slice fixed at
// launch per worker rank.
//
// A unit is a whole file, or a byte range of at most `split_size` bytes of
// one; like every range the readers read (common/input_split.h), it owns
// the lines that start inside it, so the units of an epoch read every line
// once. Units are handed out in epoch order, then file order. A worker may
// hold several at once (it reads ahead). When a worker dies its units go
// back to the front of the pool whole (Release): the examples it had pushed
// from them are trained again, and a death costs at most the units it held.
//
// Progress() is what a checkpoint keeps: every range not yet done, with the
// units in flight cut down to what their workers had not yet read at the
// cut. Restore() makes a pool of it for any number of workers, which then
// trains exactly the lines the uninterrupted job still had to train.
//
// Following (data.follow), the pool is never finished: files that arrive
// are added as they are found (AddArrived), each once, by path; with
// nothing pending a worker waits. The paths taken in are part of the
// progress, so a restored pool takes in only files it has not seen.
//
// A plain value; not thread-safe (the scheduler's coordinator owns it).
#ifndef SPARTA_SCHEDULER_WORK_POOL_H_
#define SPARTA_SCHEDULER_WORK_POOL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/input_split.h"
#include "sparta.pb.h"

namespace sparta {

class WorkPool {
 public:
  struct Unit {
    uint64_t id = 0;  // unique in this pool, never reused
    uint32_t epoch = 0;
    FileRange range;
  };
  struct InputFile {
    std::string path;
    uint64_t size = 0;
  };
  enum class Outcome {
    kAssigned,  // `unit` is the worker's
    kWait,      // nothing to hand out now, but units in flight may come back
    kFinished,  // every unit of every epoch is done
  };
  struct Next {
    Outcome outcome = Outcome::kFinished;
    Unit unit;
  };

  // Cuts `files` into units of at most `split_size` bytes (0: whole files),
  // `epochs` times over. Empty files give no unit.
  static absl::StatusOr<WorkPool> Cut(const std::vector<InputFile>& files, uint64_t split_size, uint32_t epochs);
  // The pool of what `progress` says remains.
  static WorkPool Restore(const pb::WorkProgress& progress);
  // data.follow: from now on the pool is not finished when empty.
  void set_following(bool following) { following_ = following; }
  bool following() const { return following_; }
  // Adds the units of each file of `files` not taken in before (cut into
  // `split_size` bytes, 0: whole; one epoch). Returns the files added.
  std::vector<InputFile> AddArrived(const std::vector<InputFile>& files, uint64_t split_size);

  // The whole pool, units in flight and their workers too, for a restarted
  // scheduler; and back.
  void ToState(pb::WorkPoolState* state) const;
  static WorkPool FromState(const pb::WorkPoolState& state);

  // The next unit for `worker`.
  Next Take(uint32_t worker);
  // `worker` has trained every line of unit `id`. False, and nothing
  // changes, if the unit is not the worker's (a report from before a
  // Release, say).
  bool Done(uint32_t worker, uint64_t id);
  // `worker` is gone: its units go back to the front of the pool, in the
  // order they were handed out, less the first `trained(id)` bytes of each
  // (a line boundary; 0 when not known), which it had trained. Returns
  // what went back.
  std::vector<Unit> Release(uint32_t worker, const std::function<uint64_t(uint64_t id)>& trained = nullptr);

  // What remains. `read(id)`: bytes of in-flight unit `id` its worker had
  // read and trained at the cut (0 when not known), a line boundary.
  pb::WorkProgress Progress(const std::function<uint64_t(uint64_t id)>& read) const;

  // The units in flight to `worker`, in the order they were handed out.
  std::vector<Unit> HeldBy(uint32_t worker) const;

  bool finished() const { return !following_ && pending_.empty() && in_flight_.empty(); }
  size_t pending() const { return pending_.size(); }
  size_t in_flight() const { return in_flight_.size(); }

 private:
  struct Held {
    uint32_t worker = 0;
    Unit unit;
  };
  void Add(uint32_t epoch, const std::string& path, uint64_t begin, uint64_t end);
  void AddFile(uint32_t epoch, const InputFile& file, uint64_t split_size);

  std::deque<Unit> pending_;
  std::map<uint64_t, Held> in_flight_;  // by id, which follows the order of the cut
  uint64_t next_id_ = 1;
  bool following_ = false;
  std::set<std::string> files_seen_;  // every path taken in (data.follow)
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_WORK_POOL_H_
