// RocksLog: RocksDB's informational log, sent to the daemon's log instead of
// a LOG file in the database folder.
//
// Why: RocksDB writes its LOG file into the database folder, the one place
// that is full when the disk is full; Debian's RocksDB is built with
// assertions, and its file writer aborts the process on a second write
// after a failed one, so an ENOSPC on LOG took the whole server down while
// RocksDB was reporting the real error. Its messages are debug lines here,
// warnings and errors stay warnings and errors. (Read-only opens of
// checkpoints also no longer leave LOG files in them.)
//
// Header-only, for the libraries that link RocksDB. Thread-safe (spdlog is).
#ifndef SPARTA_COMMON_ROCKS_LOG_H_
#define SPARTA_COMMON_ROCKS_LOG_H_

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>

#include <rocksdb/env.h>

#include "common/logging.h"

namespace sparta {

class RocksLog : public rocksdb::Logger {
 public:
  RocksLog() : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL) {}

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    const bool problem = level >= rocksdb::InfoLogLevel::WARN_LEVEL && level != rocksdb::InfoLogLevel::HEADER_LEVEL;
    if (!problem && !spdlog::should_log(spdlog::level::debug)) return;
    char line[1024];
    std::vsnprintf(line, sizeof(line), format, ap);
    // Every checkpoint cut makes RocksDB say this at warning level; it is
    // the normal nesting of its own file-deletion switch, not a problem.
    if (std::strstr(line, "File Deletions Enable, but not really enabled") != nullptr ||
        std::strstr(line, "File Deletions Disabled, but already disabled") != nullptr) {
      spdlog::debug("rocksdb: {}", line);
      return;
    }
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL && level != rocksdb::InfoLogLevel::HEADER_LEVEL) {
      spdlog::error("rocksdb: {}", line);
    } else if (problem) {
      spdlog::warn("rocksdb: {}", line);
    } else {
      spdlog::debug("rocksdb: {}", line);
    }
  }
};

// One logger for every database of the process.
inline std::shared_ptr<rocksdb::Logger> SharedRocksLog() {
  static const std::shared_ptr<rocksdb::Logger> log = std::make_shared<RocksLog>();
  return log;
}

}  // namespace sparta

#endif  // SPARTA_COMMON_ROCKS_LOG_H_
