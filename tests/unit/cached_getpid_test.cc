// The cached getpid() (common/cached_getpid.cc), linked into this program as
// into every daemon: it is the one that shared libraries such as libzmq
// resolve, it answers the process's own pid, and a forked child answers its
// own pid, not the parent's (libzmq's fork check relies on that).
#include <dlfcn.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

namespace sparta::cached_getpid_test {
namespace {

pid_t KernelPid() { return static_cast<pid_t>(syscall(SYS_getpid)); }

TEST_CASE("getpid() is the program's own, for the shared libraries too", "[cached_getpid]") {
  // The first definition in the lookup order is what libzmq's calls bind
  // to; RTLD_NEXT finds the one after this program's: glibc's.
  void* first = dlsym(RTLD_DEFAULT, "getpid");
  void* next = dlsym(RTLD_NEXT, "getpid");
  REQUIRE(first != nullptr);
  REQUIRE(next != nullptr);
  CHECK(first != next);
  CHECK(getpid() == KernelPid());
  CHECK(getpid() == KernelPid());  // answered from the cache now
}

TEST_CASE("a forked child's getpid() is its own pid", "[cached_getpid]") {
  const pid_t parent = getpid();  // fills the cache before the fork
  REQUIRE(parent == KernelPid());
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Only async-signal-safe calls here: the test process has threads.
    const pid_t mine = getpid();
    _exit(mine == KernelPid() && mine != parent ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(getpid() == parent);
}

}  // namespace
}  // namespace sparta::cached_getpid_test
