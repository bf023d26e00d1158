#include "worker/compute/cpu/blas_threads.h"

#include <cblas.h>

#include <cstdlib>

namespace sparta {
namespace {

bool Set(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0';
}

}  // namespace

bool BlasThreadsChosen() { return Set("OPENBLAS_NUM_THREADS") || Set("OMP_NUM_THREADS"); }

int UseBlasThreads(int threads) {
  if (!BlasThreadsChosen()) openblas_set_num_threads(threads);
  return BlasThreads();
}

int BlasThreads() { return openblas_get_num_threads(); }

}  // namespace sparta
