#include "ctl/scale_request.h"

#include <chrono>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace sparta {

absl::Status WriteScaleRequest(const std::string& run_dir, uint32_t servers, uint32_t start) {
  const std::string path = absl::StrCat(run_dir, "/scale.json");
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    const auto id = std::chrono::system_clock::now().time_since_epoch() / std::chrono::nanoseconds(1);
    out << "{\"servers\": " << servers << ", \"start\": " << start << ", \"request\": " << id << "}\n";
    if (!out.flush()) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace sparta
