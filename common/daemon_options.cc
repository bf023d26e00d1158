#include "common/daemon_options.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/logging.h"

namespace sparta {

std::string RoleName(pb::Role role) {
  switch (role) {
    case pb::SCHEDULER: return "scheduler";
    case pb::SERVER: return "server";
    case pb::WORKER: return "worker";
    case pb::SERVING: return "serve";
    default: return "unknown";
  }
}

void KeepLargeBuffersInHeap() {
  // Request payloads are megabytes, allocated and freed on every request.
  // glibc would hand each one back to the kernel (munmap) and fault it in
  // again (zeroed) next time; keeping them in the heap makes them reusable.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

std::optional<int> ParseDaemonOptions(int argc, char** argv, pb::Role role, DaemonOptions* options,
                                      const std::function<void(CLI::App&)>& extra) {
  CLI::App app("sparta-" + RoleName(role) + ": a Sparta " + RoleName(role) + " daemon");
  app.add_option("--config", options->config_path, "cluster/job YAML file")->required();
  app.add_option("--set", options->overrides, "override a config key: key=value (repeatable)");
  app.add_option("--rank", options->rank,
                 role == pb::SCHEDULER ? "which address of cluster.scheduler this scheduler listens on (default: the "
                                         "first; the others are standbys', with cluster.coordination etcd)"
                                       : "rank among daemons of this role (default: assigned)");
  if (role == pb::WORKER) {
    app.add_flag("--join", options->join,
                 "join a running job (data.assignment: on_demand): take a free rank, or one past cluster.workers");
  } else if (role == pb::SERVER) {
    app.add_flag("--join", options->join,
                 "join a running job: take a free rank, or one past cluster.servers; shards move to this server "
                 "until rows are balanced (needs storage.ack: all)");
  }
  if (role == pb::SCHEDULER || role == pb::SERVER) {
    app.add_flag("--serving", options->serving,
                 "run in a serving cluster: serving.shards servers hold the version serving.model, read-only, for "
                 "sparta-serve front-ends (serving.shards > 0); no workers, no checkpoints");
  }
  app.add_option("--info-file", options->info_file, "write this node's JSON description here once registered");
  app.add_flag("--print-config", options->print_config, "print the resolved configuration as JSON and exit");
  if (extra) extra(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto config = LoadConfig(options->config_path, options->overrides);
  if (!config.ok()) {
    std::cerr << "sparta-" << RoleName(role) << ": config error: " << config.status().message() << "\n";
    return 2;
  }
  options->config = *std::move(config);
  if (options->serving) {
    if (auto st = AsServingCluster(&options->config); !st.ok()) {
      std::cerr << "sparta-" << RoleName(role) << ": config error: " << st.message() << "\n";
      return 2;
    }
  }
  if (options->print_config) {
    std::cout << ConfigToJson(options->config);
    return 0;
  }
  // With --join a server may ask for a rank past cluster.servers (a
  // StatefulSet scaled up names its pods so): the job grows to it.
  if (options->rank >= 0 && role != pb::SERVING && !(role == pb::SERVER && options->join)) {
    const int count = role == pb::SERVER   ? options->config.cluster.servers
                      : role == pb::WORKER ? options->config.cluster.workers
                                           : static_cast<int>(options->config.cluster.schedulers.size());
    if (options->rank >= count) {
      std::cerr << "sparta-" << RoleName(role) << ": --rank " << options->rank << " is out of range: "
                << (role == pb::SCHEDULER ? "cluster.scheduler lists " : "cluster." + RoleName(role) + "s is ")
                << count << "\n";
      return 2;
    }
  }
  if (role == pb::WORKER && options->join && options->config.data.assignment_mode != Assignment::kOnDemand) {
    std::cerr << "sparta-worker: --join needs data.assignment: on_demand (a static job's input is split among "
                 "cluster.workers ranks at launch)\n";
    return 2;
  }
  KeepLargeBuffersInHeap();
  const std::string name = options->rank >= 0 ? absl::StrCat(RoleName(role), "-", options->rank) : RoleName(role);
  InitLogging(name, options->config.log.level);
  return std::nullopt;
}

void WriteInfoFile(const std::string& path, const pb::NodeInfo& node) {
  if (path.empty()) return;
  // Write-then-rename so a reader never sees half a file.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "{\"role\": " << JsonQuote(RoleName(node.role())) << ", \"rank\": " << node.rank()
        << ", \"id\": " << node.id() << ", \"pid\": " << node.pid() << ", \"host\": " << JsonQuote(node.host())
        << ", \"port\": " << node.data_port();
    if (node.predict_port() != 0) out << ", \"zmq_port\": " << node.predict_port();
    out << "}\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

}  // namespace sparta
