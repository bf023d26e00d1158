// sparta-worker: a training daemon. See worker/worker.h.
#include "common/daemon_options.h"
#include "common/termination.h"
#include "common/logging.h"
#include "worker/worker.h"

int main(int argc, char** argv) {
  sparta::CatchTermination();  // SIGTERM: final checkpoint, then exit (common/termination.h)
  sparta::DaemonOptions options;
  if (auto exit_code = sparta::ParseDaemonOptions(argc, argv, sparta::pb::WORKER, &options)) return *exit_code;
  sparta::Worker worker(options.config, options.rank, options.info_file, options.join);
  absl::Status status = worker.Run();
  if (!status.ok()) {
    spdlog::error("{}", status.message());
    return 1;
  }
  return 0;
}
