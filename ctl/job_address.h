// JobAddress: where sparta-ctl finds a running job, and with what keys.
// From a run folder (RUN/ctl.yaml, written by `scripts/sparta launch`), from
// the job's config file, or from a scheduler address given outright.
// Stateless; thread-safe.
#ifndef SPARTA_CTL_JOB_ADDRESS_H_
#define SPARTA_CTL_JOB_ADDRESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace sparta {

struct JobAddressOptions {
  std::string run_dir;
  std::string config;
  std::vector<std::string> overrides;
  std::string scheduler;  // host:port; wins over the others
  std::string key_file;   // wins over the others; implies cluster.auth: curve
};

// The scheduler address and auth settings (keys loaded) of the job.
absl::StatusOr<ClusterConfig> ResolveJobAddress(const JobAddressOptions& options);

}  // namespace sparta

#endif  // SPARTA_CTL_JOB_ADDRESS_H_
