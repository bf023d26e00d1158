// ClockTable: each worker's clock (the steps it has finished with every push
// acknowledged) and their minimum, which the scheduler sends to the workers
// so that SSP/BSP workers know how far the slowest one is (ps-lite and
// Petuum's SSP keep the same table). A finished worker reports the maximum
// clock and stops holding the others back. Not thread-safe: the scheduler's
// thread owns it.
#ifndef SPARTA_SCHEDULER_CLOCK_TABLE_H_
#define SPARTA_SCHEDULER_CLOCK_TABLE_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "common/worker_clock.h"

namespace sparta {

class ClockTable {
 public:
  explicit ClockTable(int workers) : clocks_(workers, 0) {}

  // A job resumed from a checkpoint: each worker starts from its saved clock.
  void Start(const std::vector<uint64_t>& clocks) {
    for (size_t i = 0; i < clocks.size() && i < clocks_.size(); ++i) clocks_[i] = clocks[i];
    min_ = *std::min_element(clocks_.begin(), clocks_.end());
  }

  // Records worker `rank`'s clock (clocks never go back; a resent old value
  // is ignored). Returns the new minimum if it rose.
  std::optional<uint64_t> Update(int rank, uint64_t clock) {
    if (rank < 0 || rank >= static_cast<int>(clocks_.size())) return std::nullopt;
    clocks_[rank] = std::max(clocks_[rank], clock);
    // The widest gap between a running worker and the slowest one seen so
    // far: an independent check of the staleness bound (at most s + 1, as a
    // worker may finish the step it was allowed to start).
    const uint64_t slowest = *std::min_element(clocks_.begin(), clocks_.end());
    for (uint64_t c : clocks_) {
      if (c != kFinished) max_spread_ = std::max(max_spread_, c - slowest);
    }
    const uint64_t now = *std::min_element(clocks_.begin(), clocks_.end());
    if (now <= min_) return std::nullopt;
    min_ = now;
    return min_;
  }

  // data.assignment on_demand. Worker `rank` is gone: it holds no one back
  // (until a worker takes its rank again with Rejoin).
  std::optional<uint64_t> Remove(int rank) { return Update(rank, kFinished); }
  // A worker takes rank `rank` in the running job, or comes back after it
  // was counted out (Remove) while it waited for work: it starts at the
  // slowest live worker's clock, or at `own`, its own, if that is ahead;
  // the returned clock is what it is told to count from.
  uint64_t Rejoin(int rank, uint64_t own = 0) {
    if (rank < 0) return min_;
    // A worker that joined past the job's first count.
    if (rank >= static_cast<int>(clocks_.size())) clocks_.resize(rank + 1, kFinished);
    const uint64_t start = std::max(LiveMin(), own);
    clocks_[rank] = start;
    min_ = std::min(min_, start);
    return start;
  }

  uint64_t min() const { return min_; }
  // Worker `rank`'s clock (kFinished once it is done training).
  uint64_t clock(int rank) const {
    return rank >= 0 && rank < static_cast<int>(clocks_.size()) ? clocks_[rank] : kFinished;
  }
  uint64_t max_spread() const { return max_spread_; }

  static constexpr uint64_t kFinished = kFinishedClock;  // common/worker_clock.h

 private:
  // The least clock of a worker still training (min_ if none is).
  uint64_t LiveMin() const {
    uint64_t least = kFinished;
    for (uint64_t c : clocks_) least = std::min(least, c);
    return least == kFinished ? min_ : least;
  }

  std::vector<uint64_t> clocks_;
  uint64_t min_ = 0;
  uint64_t max_spread_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_CLOCK_TABLE_H_
