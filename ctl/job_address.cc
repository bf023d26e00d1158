#include "ctl/job_address.h"

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "common/curve_keys.h"

namespace sparta {
namespace {

absl::Status ReadRunFile(const std::string& run_dir, ClusterConfig* cluster) {
  const std::string path = absl::StrCat(run_dir, "/ctl.yaml");
  try {
    const YAML::Node root = YAML::LoadFile(path);
    cluster->scheduler = root["scheduler"].as<std::string>("");
    cluster->auth = root["auth"].as<std::string>("none");
    cluster->key_file = root["key_file"].as<std::string>("");
  } catch (const YAML::Exception& e) {
    return absl::NotFoundError(absl::StrCat(path, ": ", e.what(), " (is ", run_dir, " a run folder of scripts/sparta launch?)"));
  }
  if (cluster->scheduler.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no scheduler address"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ClusterConfig> ResolveJobAddress(const JobAddressOptions& options) {
  ClusterConfig cluster;
  if (!options.config.empty()) {
    auto config = LoadConfig(options.config, options.overrides);
    if (!config.ok()) return config.status();
    cluster = config->cluster;
  } else if (!options.run_dir.empty()) {
    if (auto st = ReadRunFile(options.run_dir, &cluster); !st.ok()) return st;
  } else if (options.scheduler.empty()) {
    return absl::InvalidArgumentError("which job? give --run RUN_DIR, --config FILE or --scheduler HOST:PORT");
  }
  if (!options.scheduler.empty()) cluster.scheduler = options.scheduler;
  if (!options.key_file.empty()) {
    cluster.auth = "curve";
    cluster.key_file = options.key_file;
  }
  if (cluster.auth == "curve" && cluster.curve_secret.empty()) {
    if (cluster.key_file.empty()) return absl::InvalidArgumentError("cluster.auth is curve: give --key-file");
    auto keys = ReadCurveKeyFile(cluster.key_file);
    if (!keys.ok()) return keys.status();
    cluster.curve_public = keys->public_key;
    cluster.curve_secret = keys->secret_key;
  }
  return cluster;
}

}  // namespace sparta
