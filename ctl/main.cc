// sparta-ctl: operate a running Sparta job, and make its keys.
//
//   sparta-ctl status     [--json]        nodes, roles, shards, epoch, throughput, staleness
//   sparta-ctl checkpoint                 take a checkpoint now
//   sparta-ctl stop                       checkpoint (with storage.path), then end the job
//   sparta-ctl drain worker-N             the worker finishes its work units and exits 0 (on_demand)
//   sparta-ctl drain server-N             its shards move to the other servers live; then it exits 0
//   sparta-ctl scale --servers N          run on N servers: new ones (--join) get shards until rows
//                                         balance; or the highest ranks are drained
//   sparta-ctl metrics    [--node NAME]   every daemon's /metrics (or one's)
//   sparta-ctl keygen FILE                a new cluster key file for cluster.auth: curve
//   sparta-ctl plan CONFIG --keys N       DRAM and disk the model's tables need for N keys
//   sparta-ctl predict FILE --serve URLS --model NAME
//                                         score FILE's lines with sparta-serve replicas
//
// The job is found from --run RUN_DIR (what `scripts/sparta launch` left
// there), --config FILE [--set key=value]... (the job's own config), or
// --scheduler HOST:PORT [--key-file FILE].
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/curve_keys.h"
#include "common/daemon_options.h"
#include "ctl/control_client.h"
#include "ctl/http_get.h"
#include "ctl/job_address.h"
#include "ctl/plan.h"
#include "ctl/predict_file.h"
#include "ctl/scale_request.h"
#include "ctl/status_text.h"
#include "worker/model_tables.h"
#include "worker/plugins.h"

namespace {

// The tables of the configured model, as a worker would declare them.
absl::StatusOr<std::vector<sparta::pb::TableSpec>> ConfiguredTableSpecs(const sparta::Config& config) {
  auto make_reader = sparta::OpenReaders(config);
  if (!make_reader.ok()) return make_reader.status();
  auto probe = (*make_reader)();
  if (!probe.ok()) return probe.status();
  auto model = sparta::OpenModel(config, (*probe)->schema());
  if (!model.ok()) return model.status();
  return sparta::ModelTableSpecs(**model, config);
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "sparta-ctl: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sparta;
  CLI::App app{"sparta-ctl: operate a running Sparta job (status, checkpoint, stop, metrics) and make cluster keys"};
  app.require_subcommand(1);
  JobAddressOptions where;
  double timeout_s = 5;
  auto add_job_options = [&](CLI::App* cmd) {
    cmd->add_option("--run", where.run_dir, "run folder of a job started by scripts/sparta launch");
    cmd->add_option("--config", where.config, "the job's config file");
    cmd->add_option("--set", where.overrides, "override a config key (key=value), as for the daemons");
    cmd->add_option("--scheduler", where.scheduler, "the scheduler's host:port");
    cmd->add_option("--key-file", where.key_file, "the cluster key file (cluster.auth: curve)");
    cmd->add_option("--timeout", timeout_s, "seconds to wait for an answer")->capture_default_str();
  };
  bool json = false;
  auto* status_cmd = app.add_subcommand("status", "nodes, roles, shards, epoch, throughput, staleness");
  add_job_options(status_cmd);
  status_cmd->add_flag("--json", json, "print the status as JSON");
  auto* checkpoint_cmd = app.add_subcommand("checkpoint", "take a checkpoint now");
  add_job_options(checkpoint_cmd);
  auto* stop_cmd = app.add_subcommand("stop", "checkpoint (with storage.path), then end the job");
  add_job_options(stop_cmd);
  std::string drained;
  auto* drain_cmd = app.add_subcommand("drain", "a worker finishes its work units (data.assignment on_demand), or a server's shards move "
                                             "to the others; then it exits 0");
  add_job_options(drain_cmd);
  drain_cmd->add_option("node", drained, "worker-N or server-N")->required();
  uint32_t scale_servers = 0;
  auto* scale_cmd = app.add_subcommand("scale", "run the job on N servers: servers started with --join (the launcher "
                                                "starts them) get shards until rows balance; or the highest ranks are "
                                                "drained");
  add_job_options(scale_cmd);
  scale_cmd->add_option("--servers", scale_servers, "how many servers")->required()->check(CLI::PositiveNumber);
  std::string node;
  auto* metrics_cmd = app.add_subcommand("metrics", "print every daemon's /metrics (Prometheus text)");
  add_job_options(metrics_cmd);
  metrics_cmd->add_option("--node", node, "only this node: scheduler, server-N or worker-N");
  std::string key_path;
  auto* keygen_cmd = app.add_subcommand("keygen", "write a new cluster key file (CurveZMQ) for cluster.auth: curve");
  keygen_cmd->add_option("file", key_path, "where to write it (mode 0600; never overwritten)")->required();
  std::string plan_config;
  std::vector<std::string> plan_sets;
  uint64_t plan_keys = 0;
  auto* plan_cmd = app.add_subcommand("plan", "bytes per row of each table, DRAM and disk per server for N keys");
  plan_cmd->add_option("config", plan_config, "the job's config file")->required();
  plan_cmd->add_option("--keys", plan_keys, "distinct keys the sparse tables will hold")->required();
  plan_cmd->add_option("--set", plan_sets, "override a config key (key=value)");
  PredictFileOptions predict;
  std::string predict_urls;
  int64_t deadline_ms = 1000;
  auto* predict_cmd = app.add_subcommand("predict", "score every line of FILE (or - for stdin) with sparta-serve "
                                                    "replicas, spread by least outstanding requests; one prediction "
                                                    "per line, in order");
  predict_cmd->add_option("file", predict.input, "input lines in the job's format")->required();
  predict_cmd->add_option("--serve", predict_urls,
                          "the replicas: http://HOST:PORT (HTTP) or tcp://HOST:PORT (ZeroMQ), comma-separated")
      ->required();
  predict_cmd->add_option("--key-file", predict.key_file,
                          "the cluster key file, for ZeroMQ endpoints of a job with cluster.auth: curve");
  predict_cmd->add_option("--model", predict.model, "the model's NAME in /v1/models/NAME:predict")->required();
  predict_cmd->add_option("--batch", predict.batch, "lines per request")->capture_default_str();
  predict_cmd->add_option("--parallel", predict.parallel, "requests in flight")->capture_default_str();
  predict_cmd->add_option("--deadline-ms", deadline_ms, "per request, its one retry included")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (predict_cmd->parsed()) {
    predict.urls = absl::StrSplit(predict_urls, ',', absl::SkipEmpty());
    predict.deadline = std::chrono::milliseconds(deadline_ms);
    if (auto st = PredictFile(predict, stdout); !st.ok()) return Fail(st);
    return 0;
  }

  if (plan_cmd->parsed()) {
    auto config = LoadConfig(plan_config, plan_sets);
    if (!config.ok()) return Fail(config.status());
    auto specs = ConfiguredTableSpecs(*config);
    if (!specs.ok()) return Fail(specs.status());
    auto plan = PlanMemory(*config, *specs, plan_keys, std::filesystem::temp_directory_path().string());
    if (!plan.ok()) return Fail(plan.status());
    std::printf("%s", PlanText(*plan).c_str());
    return 0;
  }

  if (keygen_cmd->parsed()) {
    auto keys = NewCurveKeyPair();
    if (!keys.ok()) return Fail(keys.status());
    if (auto st = WriteCurveKeyFile(key_path, *keys); !st.ok()) return Fail(st);
    std::printf("wrote %s (public key %s); set cluster.auth: curve and cluster.key_file: %s\n", key_path.c_str(),
                keys->public_key.c_str(), key_path.c_str());
    return 0;
  }
  auto cluster = ResolveJobAddress(where);
  if (!cluster.ok()) return Fail(cluster.status());
  ControlClient client(*cluster, std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  if (checkpoint_cmd->parsed()) {
    if (auto st = client.Checkpoint(); !st.ok()) return Fail(st);
    std::printf("checkpoint started; the scheduler's log says when it is published\n");
    return 0;
  }
  if (stop_cmd->parsed()) {
    if (auto st = client.Stop(); !st.ok()) return Fail(st);
    std::printf("stopping: the job checkpoints (when it has storage.path) and ends\n");
    return 0;
  }
  if (drain_cmd->parsed()) {
    int rank = -1;
    const bool server = drained.rfind("server-", 0) == 0;
    if ((!server && drained.rfind("worker-", 0) != 0) || !absl::SimpleAtoi(drained.substr(7), &rank) || rank < 0) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("drain: expected worker-N or server-N, got '", drained, "'")));
    }
    if (auto st = client.Drain(server ? pb::SERVER : pb::WORKER, rank); !st.ok()) return Fail(st);
    std::printf(server ? "draining %s: its shards move to the other servers, then it exits\n"
                       : "draining %s: it finishes the work units it holds, then exits\n",
                drained.c_str());
    return 0;
  }
  if (scale_cmd->parsed()) {
    auto answer = client.Scale(scale_servers);
    if (!answer.ok()) return Fail(answer.status());
    std::printf("scale to %u servers: %s\n", scale_servers, answer->what.c_str());
    if (answer->to_start == 0) return 0;
    if (!where.run_dir.empty()) {
      // The launcher of the job watches this file and starts the servers
      // (sparta-server --join).
      if (auto st = WriteScaleRequest(where.run_dir, scale_servers, answer->to_start); !st.ok()) return Fail(st);
      std::printf("the launcher of %s starts %u servers\n", where.run_dir.c_str(), answer->to_start);
    } else {
      std::printf("start %u servers with sparta-server --config JOB.yaml --join (on Kubernetes: kubectl scale "
                  "statefulset NAME-server --replicas %u)\n", answer->to_start, scale_servers);
    }
    return 0;
  }
  auto status = client.Status();
  if (!status.ok()) return Fail(status.status());
  if (status_cmd->parsed()) {
    if (json) {
      std::string text;
      google::protobuf::util::JsonPrintOptions options;
      options.add_whitespace = true;
      options.always_print_primitive_fields = true;
      options.preserve_proto_field_names = true;
      if (!google::protobuf::util::MessageToJsonString(*status, &text, options).ok()) {
        return Fail(absl::InternalError("cannot print the status as JSON"));
      }
      std::printf("%s", text.c_str());
    } else {
      std::printf("%s", StatusText(*status, cluster->scheduler).c_str());
    }
    return 0;
  }
  // metrics: the scheduler's, then every live node's.
  std::string scheduler_host = cluster->scheduler.substr(0, cluster->scheduler.rfind(':'));
  struct Target {
    std::string name, host;
    uint32_t port;
  };
  std::vector<Target> targets = {{"scheduler", scheduler_host, status->scheduler_metrics_port()}};
  for (const auto& n : status->nodes()) {
    if (!n.dead()) targets.push_back({absl::StrCat(RoleName(n.info().role()), "-", n.info().rank()), n.info().host(),
                                      n.info().metrics_port()});
  }
  int failures = 0, shown = 0;
  for (const Target& t : targets) {
    if (!node.empty() && t.name != node) continue;
    ++shown;
    if (t.port == 0) {
      std::printf("# %s: no /metrics (metrics.port: -1)\n", t.name.c_str());
      continue;
    }
    auto body = HttpGet(t.host, static_cast<int>(t.port), "/metrics", std::chrono::milliseconds(2000));
    if (!body.ok()) {
      ++failures;
      std::printf("# %s: %s\n", t.name.c_str(), std::string(body.status().message()).c_str());
      continue;
    }
    std::printf("# %s: http://%s:%u/metrics\n%s", t.name.c_str(), t.host.c_str(), t.port, body->c_str());
  }
  if (shown == 0) return Fail(absl::NotFoundError(absl::StrCat("no node named '", node, "'")));
  return failures ? 1 : 0;
}
