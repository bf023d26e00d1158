// sparta-server: a parameter server daemon. See server/server.h.
#include "common/logging.h"

#include "common/daemon_options.h"
#include "common/termination.h"
#include "server/server.h"

int main(int argc, char** argv) {
  sparta::CatchTermination();  // SIGTERM: final checkpoint, then exit (common/termination.h)
  sparta::DaemonOptions options;
  if (auto exit_code = sparta::ParseDaemonOptions(argc, argv, sparta::pb::SERVER, &options)) return *exit_code;
  sparta::Server server(options.config, options.rank, options.info_file, options.join);
  absl::Status status = server.Run();
  if (!status.ok()) {
    spdlog::error("{}", status.message());
    return 1;
  }
  return 0;
}
