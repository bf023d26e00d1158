#include "common/termination.h"

#include <pthread.h>

#include <atomic>
#include <csignal>
#include <thread>

namespace sparta {
namespace {

std::atomic<bool> requested{false};

void OnTerminate(int) { requested.store(true); }

}  // namespace

void CatchTermination() {
  // SIGTERM is blocked in this thread and in every thread started after it
  // (they inherit the mask) and taken by one thread with sigwait(): no
  // system call anywhere is interrupted by it (ZeroMQ's poll() would throw
  // on EINTR), and nothing but setting the flag happens in its context.
  // Threads a library started before main() (OpenBLAS starts its pool when
  // it is loaded) do not block it: for them, a handler that sets the flag
  // replaces the default action, which would kill the process.
  struct sigaction action = {};
  action.sa_handler = OnTerminate;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int signal = 0;
    while (sigwait(&set, &signal) == 0) requested.store(true);
  }).detach();
}

bool TerminationRequested() { return requested.load(); }

}  // namespace sparta
