// LimitBlasThreads(): one OpenBLAS thread per compute thread unless the
// user's environment names a number (worker/compute/cpu/blas_threads.h).
#include <cblas.h>

#include <cstdlib>
#include <optional>
#include <string>

#include <catch2/catch.hpp>

#include "worker/compute/cpu/blas_threads.h"

namespace sparta {
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

TEST_CASE("one BLAS thread unless the environment names a number", "[blas]") {
  const int original = openblas_get_num_threads();
  {
    ScopedEnv a("OPENBLAS_NUM_THREADS", nullptr), b("OMP_NUM_THREADS", nullptr);
    openblas_set_num_threads(2);
    CHECK(LimitBlasThreads() == 1);
    CHECK(openblas_get_num_threads() == 1);
  }
  for (const char* name : {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}) {
    ScopedEnv a("OPENBLAS_NUM_THREADS", nullptr), b("OMP_NUM_THREADS", nullptr), chosen(name, "2");
    openblas_set_num_threads(2);
    const int before = openblas_get_num_threads();  // 2, or fewer on a 1-core machine
    CHECK(LimitBlasThreads() == before);
  }
  {
    // Set but empty: not a choice.
    ScopedEnv a("OPENBLAS_NUM_THREADS", ""), b("OMP_NUM_THREADS", nullptr);
    openblas_set_num_threads(2);
    CHECK(LimitBlasThreads() == 1);
  }
  openblas_set_num_threads(original);
}

}  // namespace
}  // namespace sparta
