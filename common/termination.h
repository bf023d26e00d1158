// Termination: SIGTERM as a request to stop cleanly, not an order to die.
//
// Slurm preemption and Kubernetes eviction send SIGTERM, then SIGKILL after a
// grace period (Kubernetes sends it to every pod of the job at once). A
// daemon that installs this handler keeps running on SIGTERM: the scheduler
// takes a final checkpoint and ends the job as "preempted"; servers and
// workers tell the scheduler (SchedulerClient sends PREEMPT) and wait for
// it to end the job, for at most cluster.shutdown_grace.
//
// SIGTERM only sets a flag, which the daemons poll.
// Thread-safe.
#ifndef SPARTA_COMMON_TERMINATION_H_
#define SPARTA_COMMON_TERMINATION_H_

namespace sparta {

// Takes SIGTERM over for this process. Call it first in main(), before any
// thread is started: threads started earlier could still receive SIGTERM.
void CatchTermination();

// True once SIGTERM has arrived.
bool TerminationRequested();

}  // namespace sparta

#endif  // SPARTA_COMMON_TERMINATION_H_
