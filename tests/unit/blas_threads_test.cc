// UseBlasThreads(): the number a process asks for, unless the user's (or
// the launcher's) environment names one (worker/compute/cpu/blas_threads.h).
#include <cstdlib>
#include <optional>
#include <string>

#include <catch2/catch.hpp>

#include "worker/compute/cpu/blas_threads.h"

namespace sparta::blas_threads_test {
namespace {

// Sets or clears an environment variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST_CASE("BLAS threads: as asked, unless the environment names a number", "[blas]") {
  const int original = BlasThreads();
  {
    ScopedEnv a("OPENBLAS_NUM_THREADS", nullptr), b("OMP_NUM_THREADS", nullptr);
    CHECK_FALSE(BlasThreadsChosen());
    CHECK(UseBlasThreads(1) == 1);
    CHECK(BlasThreads() == 1);
  }
  for (const char* name : {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}) {
    ScopedEnv a("OPENBLAS_NUM_THREADS", nullptr), b("OMP_NUM_THREADS", nullptr);
    UseBlasThreads(2);
    const int before = BlasThreads();  // 2, or fewer on a 1-core machine
    ScopedEnv chosen(name, "2");
    CHECK(BlasThreadsChosen());
    CHECK(UseBlasThreads(1) == before);  // left as it is
  }
  {
    ScopedEnv a("OPENBLAS_NUM_THREADS", ""), b("OMP_NUM_THREADS", nullptr);
    CHECK_FALSE(BlasThreadsChosen());  // set but empty: not a choice
  }
  UseBlasThreads(original);
}

}  // namespace
}  // namespace sparta::blas_threads_test
