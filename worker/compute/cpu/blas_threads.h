// How many threads OpenBLAS runs inside a Sparta process.
//
// OpenBLAS starts a thread per core and, between calls, keeps its idle
// threads spinning (sched_yield in a loop) for a while before they sleep.
// A Sparta process's parallelism is its own compute threads
// (worker.threads, serving.threads), and on a host it shares with servers
// and other workers those spinning threads take the cores the others need:
// two workers and two servers on 2 cores trained dnn at 0.73x the speed of
// one BLAS thread each (and a PyTorch worker, whose BLAS is the same
// library, at 0.67x; python3 spent a fifth of its time in sched_yield).
// So each process uses one BLAS thread per compute thread, as torchrun
// sets OMP_NUM_THREADS=1 for each of several processes on a host, unless
// the user chose a number (OPENBLAS_NUM_THREADS or OMP_NUM_THREADS in the
// environment, which OpenBLAS reads when it loads).
//
// Thread-safe as OpenBLAS is: call it before the compute threads start.
#ifndef SPARTA_WORKER_COMPUTE_CPU_BLAS_THREADS_H_
#define SPARTA_WORKER_COMPUTE_CPU_BLAS_THREADS_H_

namespace sparta {

// One BLAS thread, unless the environment names a number; returns the
// number OpenBLAS uses from now on.
int LimitBlasThreads();

}  // namespace sparta

#endif  // SPARTA_WORKER_COMPUTE_CPU_BLAS_THREADS_H_
