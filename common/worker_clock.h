// A worker's clock as workers send it (CLOCK) and the scheduler keeps it
// (worker/clock_gate.h, scheduler/clock_table.h): the number of steps it has
// finished with every push acknowledged, or kFinishedClock once it has
// finished training and holds no one back. One definition, as both ends of
// the wire must agree on it.
#ifndef SPARTA_COMMON_WORKER_CLOCK_H_
#define SPARTA_COMMON_WORKER_CLOCK_H_

#include <cstdint>
#include <limits>

namespace sparta {

inline constexpr uint64_t kFinishedClock = std::numeric_limits<uint64_t>::max();

}  // namespace sparta

#endif  // SPARTA_COMMON_WORKER_CLOCK_H_
