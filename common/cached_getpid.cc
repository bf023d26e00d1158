// getpid() answered from a cache, for every Sparta program (linked into
// each executable directly, so that it takes the place of glibc's for the
// shared libraries too; see common/CMakeLists.txt).
//
// Why: libzmq 4.3 checks getpid() each time a thread signals another
// (signaler_t::send, ::wait, ::recv: its fork detection), several times per
// message on every socket, and since glibc 2.25 each getpid() is a system
// call. On virtual machines whose system calls are slow (this project's
// VMs: about 1-4 µs each), they were about 40% of the system calls that a
// small request made on each side (strace of a server: 7 of 16 per request
// on its I/O thread). systemd, Ruby and py-lmdb cache the pid the same way.
//
// A child made by fork() starts with an empty cache (pthread_atfork). What
// bypasses fork() and runs code before exec (a raw clone) would see the
// parent's pid; Sparta's programs start no processes themselves.
//
// Thread-safe: every thread of a process reads the same value.
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>

namespace {

std::atomic<pid_t> cached_pid{0};

void ForgetInChild() { cached_pid.store(0, std::memory_order_relaxed); }

[[maybe_unused]] const int forget_in_child = pthread_atfork(nullptr, nullptr, ForgetInChild);

}  // namespace

extern "C" pid_t getpid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = static_cast<pid_t>(syscall(SYS_getpid));
    cached_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}
