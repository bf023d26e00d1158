// Worker: a training daemon. It registers with the scheduler, waits for the
// cluster view, declares the model's tables on the servers, trains on its
// share of data.train, and (worker 0, after every worker has finished
// training) evaluates data.test, then reports to the scheduler and waits for
// the end of the job.
//
// Run() is called once, from main(). Internally the worker has a reader
// thread (DataLoader), the KVClient's I/O thread, the scheduler client's
// thread and the training thread that runs Run().
#ifndef SPARTA_WORKER_WORKER_H_
#define SPARTA_WORKER_WORKER_H_

#include <string>

#include "absl/status/status.h"
#include "common/config.h"

namespace sparta {

class Worker {
 public:
  Worker(const Config& config, int rank, std::string info_file);

  // Runs the worker's part of the job. OK on a clean SHUTDOWN.
  absl::Status Run();

 private:
  const Config config_;
  const int requested_rank_;
  const std::string info_file_;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_WORKER_H_
