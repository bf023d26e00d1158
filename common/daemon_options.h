// DaemonOptions: the command line every Sparta daemon shares
//   sparta-<role> --config FILE [--set key=value]... [--rank N]
//                 [--info-file PATH] [--print-config]
// and the steps every main() does with it (parse, load the config, start
// logging, write the info file). Keeping them here keeps each main.cc thin.
#ifndef SPARTA_COMMON_DAEMON_OPTIONS_H_
#define SPARTA_COMMON_DAEMON_OPTIONS_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/config.h"
#include "sparta.pb.h"

namespace sparta {

struct DaemonOptions {
  std::string config_path;
  std::vector<std::string> overrides;
  int rank = -1;           // -1: the scheduler assigns one
  bool join = false;       // workers and servers: join a running job, past cluster.workers/servers if need be
  bool serving = false;    // schedulers and servers: part of a serving cluster (AsServingCluster)
  std::string info_file;   // where to write this node's JSON description
  bool print_config = false;
  std::string summary_file;  // scheduler only
  Config config;
};

// Parses argv and loads the config. On --help, --print-config or an error it
// prints what it has to and returns the process exit code; otherwise returns
// std::nullopt and the daemon goes on. `extra` adds role-specific flags.
std::optional<int> ParseDaemonOptions(int argc, char** argv, pb::Role role, DaemonOptions* options,
                                      const std::function<void(CLI::App&)>& extra = nullptr);

// Tunes malloc for a process that moves large request buffers (called by
// ParseDaemonOptions; benchmarks call it too).
void KeepLargeBuffersInHeap();

// Writes {"role", "rank", "id", "pid", "host", "port"} for launchers and tools.
void WriteInfoFile(const std::string& path, const pb::NodeInfo& node);

std::string RoleName(pb::Role role);

}  // namespace sparta

#endif  // SPARTA_COMMON_DAEMON_OPTIONS_H_
