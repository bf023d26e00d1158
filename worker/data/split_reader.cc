#include "worker/data/split_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/printable.h"

namespace sparta {
namespace {

constexpr size_t kReadChunk = 4 << 20;
constexpr uint64_t kLoggedBadLines = 20;

// An open file descriptor, closed on scope exit.
class File {
 public:
  explicit File(const std::string& path) : fd_(open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~File() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  // Reads up to n bytes at `offset`; returns bytes read, 0 at EOF, -1 on error.
  ssize_t ReadAt(char* buf, size_t n, uint64_t offset) const {
    ssize_t r;
    do {
      r = pread(fd_, buf, n, static_cast<off_t>(offset));
    } while (r < 0 && errno == EINTR);
    return r;
  }

 private:
  const int fd_;
};

}  // namespace

absl::StatusOr<uint64_t> CountNewlines(const std::string& path, uint64_t end) {
  File file(path);
  if (!file.ok()) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::vector<char> buf(kReadChunk);
  uint64_t count = 0;
  for (uint64_t offset = 0; offset < end;) {
    ssize_t n = file.ReadAt(buf.data(), std::min<uint64_t>(buf.size(), end - offset), offset);
    if (n <= 0) break;
    count += std::count(buf.data(), buf.data() + n, '\n');
    offset += n;
  }
  return count;
}

SplitReader::SplitReader(std::vector<FileRange> ranges, std::unique_ptr<Reader> reader, int64_t max_bad_lines)
    : ranges_(std::move(ranges)), reader_(std::move(reader)), max_bad_lines_(max_bad_lines) {
  for (const FileRange& r : ranges_) total_bytes_ += r.end - r.begin;
}

absl::Status SplitReader::ReadPass(const std::function<bool(const Example&, uint64_t)>& sink) {
  uint64_t bytes_before = 0;
  bool stopped = false;
  count_bad_ = passes_ == 0;
  for (const FileRange& range : ranges_) {
    if (auto st = ReadRange(range, bytes_before, sink, &stopped); !st.ok()) return st;
    if (stopped) break;
    bytes_before += range.end - range.begin;
  }
  if (passes_ == 0 && bad_lines_ > kLoggedBadLines) {
    spdlog::warn("{} malformed lines skipped in total (only the first {} were logged)", bad_lines_, kLoggedBadLines);
  }
  ++passes_;
  return absl::OkStatus();
}

absl::Status SplitReader::ReadUnit(const FileRange& range, bool count_bad,
                                   const std::function<bool(const Example&, uint64_t)>& sink) {
  count_bad_ = count_bad;
  bool stopped = false;
  return ReadRange(range, 0, sink, &stopped);
}

absl::Status SplitReader::ReadRange(const FileRange& range, uint64_t bytes_before,
                                    const std::function<bool(const Example&, uint64_t)>& sink, bool* stopped) {
  File file(range.path);
  if (!file.ok()) return absl::NotFoundError(absl::StrCat(range.path, ": ", std::strerror(errno)));
  // A range that starts inside the file starts reading one byte early and
  // drops everything up to the first newline: that is the tail of a line the
  // previous range owns (or, if that byte is a newline, nothing).
  bool skip_first = range.begin > 0;
  uint64_t offset = skip_first ? range.begin - 1 : 0;
  std::vector<char> buf(kReadChunk);
  size_t head = 0, tail = 0;  // unconsumed bytes are buf[head, tail)
  uint64_t buf_offset = offset;  // file offset of buf[0]
  uint64_t line_in_range = 0;    // lines consumed, counting the skipped tail
  bool eof = false;
  while (true) {
    char* nl = static_cast<char*>(std::memchr(buf.data() + head, '\n', tail - head));
    if (nl == nullptr && !eof) {
      // Keep the partial line, refill behind it, grow if one line fills it.
      std::memmove(buf.data(), buf.data() + head, tail - head);
      buf_offset += head;
      tail -= head;
      head = 0;
      if (tail == buf.size()) buf.resize(buf.size() * 2);
      ssize_t n = file.ReadAt(buf.data() + tail, buf.size() - tail, buf_offset + tail);
      if (n < 0) return absl::UnavailableError(absl::StrCat(range.path, ": read failed: ", std::strerror(errno)));
      if (n == 0) eof = true;
      tail += n;
      continue;
    }
    if (nl == nullptr && head == tail) break;  // EOF, nothing left
    const size_t line_end = nl ? nl - buf.data() : tail;
    const uint64_t line_start = buf_offset + head;
    std::string_view line(buf.data() + head, line_end - head);
    head = nl ? line_end + 1 : tail;
    ++line_in_range;
    if (skip_first) {
      skip_first = false;
      continue;
    }
    if (line_start >= range.end) break;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (!ParseRecord(line)) {
      if (count_bad_) {
        if (auto fatal = OnBadLine(range, line_in_range, parse_error_); !fatal.ok()) return fatal;
      }
      parse_error_.clear();
      continue;
    }
    if (!sink(example_, bytes_before + std::min(range.end, buf_offset + head) - range.begin)) {
      *stopped = true;
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

bool SplitReader::ParseRecord(std::string_view line) {
  // A reader plugin that throws has found a bad record, not a reason to stop.
  try {
    return reader_->Parse(line, &example_, &parse_error_);
  } catch (const std::exception& e) {
    parse_error_ = absl::StrCat("the reader threw: ", e.what());
    return false;
  }
}

absl::Status SplitReader::OnBadLine(const FileRange& range, uint64_t line_in_range, const std::string& why) {
  ++bad_lines_;
  const bool log_it = bad_lines_ <= kLoggedBadLines;
  const bool fatal = static_cast<int64_t>(bad_lines_) > max_bad_lines_;
  if (!log_it && !fatal) return absl::OkStatus();
  // Line numbers are counted from the start of the file, so a range that
  // starts mid-file adds the lines before it (counted only now, when needed).
  uint64_t line = line_in_range;
  if (range.begin > 0) {
    auto before = CountNewlines(range.path, range.begin - 1);
    // line_in_range counts the skipped partial line, which is line before+1.
    if (before.ok()) line += *before;
  }
  const std::string where = absl::StrCat(range.path, ":", line);
  // The reason may quote the line: its bad bytes are shown escaped.
  const std::string reason = Printable(why);
  if (fatal) {
    return absl::InvalidArgumentError(absl::StrCat("too many malformed input lines: ", bad_lines_,
                                                   " > data.max_bad_lines (", max_bad_lines_, "); the last at ",
                                                   where, ": ", reason));
  }
  spdlog::warn("{}: skipped malformed line: {}", where, reason);
  return absl::OkStatus();
}

}  // namespace sparta
