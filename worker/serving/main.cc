// sparta-serve: a trained model answering predictions over HTTP and ZeroMQ. See
// worker/serving/model_server.h.
#include <unistd.h>

#include <chrono>
#include <thread>

#include "common/daemon_options.h"
#include "common/logging.h"
#include "common/termination.h"
#include "worker/serving/model_server.h"

int main(int argc, char** argv) {
  sparta::CatchTermination();  // SIGTERM: stop taking requests, finish those in progress, exit 0
  sparta::DaemonOptions options;
  if (auto exit_code = sparta::ParseDaemonOptions(argc, argv, sparta::pb::SERVING, &options, [](CLI::App& app) {
        app.description("sparta-serve: a trained model answering predictions over HTTP and ZeroMQ");
      })) {
    return *exit_code;
  }
  auto server = sparta::ModelServer::Start(options.config, options.rank);
  if (!server.ok()) {
    spdlog::error("{}", server.status().message());
    return 1;
  }
  sparta::pb::NodeInfo node;
  node.set_role(sparta::pb::SERVING);
  node.set_rank(options.rank);
  node.set_host(options.config.cluster.host);
  node.set_pid(static_cast<uint32_t>(getpid()));
  node.set_data_port(static_cast<uint32_t>((*server)->port()));
  node.set_predict_port((*server)->zmq_port());
  sparta::WriteInfoFile(options.info_file, node);
  while (!sparta::TerminationRequested() && !(*server)->cluster_ended()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  spdlog::info("{}: no new requests; finishing those in progress",
               sparta::TerminationRequested() ? "SIGTERM" : "the serving cluster has stopped");
  (*server)->Stop();
  // A serving cluster's front-end leaves it before it exits: its scheduler
  // client asked at SIGTERM, and the answer ends the connection (or it
  // gives up after cluster.shutdown_grace).
  while ((*server)->in_cluster() && !(*server)->cluster_ended()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}
