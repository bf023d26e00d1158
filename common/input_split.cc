#include "common/input_split.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"

namespace sparta {

absl::StatusOr<std::vector<std::string>> ExpandInputs(const std::vector<std::string>& patterns,
                                                      const std::string& key) {
  std::vector<std::string> files;
  for (const std::string& pattern : patterns) {
    glob_t g{};
    const int rc = glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
      globfree(&g);
      return absl::NotFoundError(absl::StrCat(key, ": no input file matches '", pattern, "'"));
    }
    if (rc != 0) {
      globfree(&g);
      return absl::UnavailableError(absl::StrCat(key, ": cannot read '", pattern, "'"));
    }
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      struct stat st;
      if (stat(g.gl_pathv[i], &st) != 0 || !S_ISREG(st.st_mode)) {
        std::string bad = g.gl_pathv[i];
        globfree(&g);
        return absl::NotFoundError(absl::StrCat(key, ": '", bad, "' is not a readable file"));
      }
      files.emplace_back(g.gl_pathv[i]);
    }
    globfree(&g);
  }
  return files;
}

absl::StatusOr<std::vector<std::string>> ListArrivedInputs(const std::vector<std::string>& patterns,
                                                           const std::string& key) {
  std::vector<std::string> files;
  std::set<std::string> listed;
  auto take = [&](const std::filesystem::path& path) {
    std::error_code ec;
    if (path.filename().string().rfind('.', 0) == 0 || !std::filesystem::is_regular_file(path, ec)) return;
    if (listed.insert(path.string()).second) files.push_back(path.string());
  };
  for (const std::string& pattern : patterns) {
    std::error_code ec;
    if (std::filesystem::is_directory(pattern, ec)) {
      std::vector<std::filesystem::path> in_folder;
      for (std::filesystem::directory_iterator it(pattern, ec), end; !ec && it != end; it.increment(ec)) {
        in_folder.push_back(it->path());
      }
      if (ec) return absl::UnavailableError(absl::StrCat(key, ": cannot list '", pattern, "': ", ec.message()));
      std::sort(in_folder.begin(), in_folder.end());
      for (const auto& path : in_folder) take(path);
      continue;
    }
    glob_t g{};
    const int rc = glob(pattern.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) take(g.gl_pathv[i]);
    }
    globfree(&g);
  }
  return files;
}

absl::StatusOr<std::vector<FileRange>> SplitInput(const std::vector<std::string>& files, int rank, int workers) {
  std::vector<FileRange> ranges;
  const int num_files = static_cast<int>(files.size());
  if (num_files == 0) return ranges;
  auto size_of = [](const std::string& path) -> absl::StatusOr<uint64_t> {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat("cannot stat '", path, "'"));
    return static_cast<uint64_t>(st.st_size);
  };
  if (num_files >= workers) {
    for (int f = rank; f < num_files; f += workers) {
      auto size = size_of(files[f]);
      if (!size.ok()) return size.status();
      ranges.push_back({files[f], 0, *size});
    }
    return ranges;
  }
  // Fewer files than workers: worker r shares file r % F with the other
  // workers of the same residue, each taking an equal byte range.
  const int f = rank % num_files;
  const int sharers = workers / num_files + (f < workers % num_files ? 1 : 0);
  const int part = rank / num_files;
  auto size = size_of(files[f]);
  if (!size.ok()) return size.status();
  const uint64_t begin = *size * part / sharers;
  const uint64_t end = *size * (part + 1) / sharers;
  ranges.push_back({files[f], begin, end});
  return ranges;
}

}  // namespace sparta
