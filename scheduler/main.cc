// sparta-scheduler: coordinates one Sparta job. See scheduler/scheduler.h.
#include "common/logging.h"

#include "common/daemon_options.h"
#include "common/termination.h"
#include "scheduler/scheduler.h"

int main(int argc, char** argv) {
  sparta::CatchTermination();  // SIGTERM: final checkpoint, then exit (common/termination.h)
  sparta::DaemonOptions options;
  auto exit_code = sparta::ParseDaemonOptions(argc, argv, sparta::pb::SCHEDULER, &options, [&](CLI::App& app) {
    app.add_option("--summary", options.summary_file, "write the job summary JSON here at the end");
  });
  if (exit_code) return *exit_code;
  sparta::Scheduler scheduler(options.config, options.summary_file, options.info_file, options.rank);
  absl::Status status = scheduler.Run();
  if (!status.ok()) {
    spdlog::error("{}", status.message());
    return 1;
  }
  spdlog::info("job finished");
  return 0;
}
