// How many threads OpenBLAS runs inside a Sparta process.
//
// OpenBLAS starts a thread per core and, between calls, keeps its idle
// threads spinning (sched_yield in a loop) for a while before they sleep.
// Where a process's own compute threads are its parallelism (several
// worker.threads, serving's threads) a multi-threaded BLAS would run
// threads x cores BLAS threads; and processes that share a host share its
// cores: two workers and two servers on 2 cores trained dnn at 0.73x the
// speed of one BLAS thread per worker (a PyTorch worker, whose BLAS is the
// same library, at 0.67x; python3 spent a fifth of its time in
// sched_yield), while one worker alone trained it 1.3x faster with 2 BLAS
// threads than with 1. So the launcher gives each worker its share of the
// host's cores (OPENBLAS_NUM_THREADS, as torchrun sets OMP_NUM_THREADS for
// several processes on a host), and a process with several compute threads
// gives each one BLAS thread, unless the environment names a number.
//
// Thread-safe as OpenBLAS is: call it before the compute threads start.
#ifndef SPARTA_WORKER_COMPUTE_CPU_BLAS_THREADS_H_
#define SPARTA_WORKER_COMPUTE_CPU_BLAS_THREADS_H_

namespace sparta {

// Whether OPENBLAS_NUM_THREADS or OMP_NUM_THREADS names a number of threads
// (OpenBLAS read it when it loaded).
bool BlasThreadsChosen();

// `threads` (> 0) BLAS threads from now on, unless BlasThreadsChosen();
// returns the number OpenBLAS uses.
int UseBlasThreads(int threads);

// The number of threads OpenBLAS uses now.
int BlasThreads();

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_CPU_BLAS_THREADS_H_
