#include "server/cold_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/hash.h"

namespace sparta {

namespace {
uint64_t DefaultHash(uint64_t key) { return Mix64(key); }
}  // namespace

absl::StatusOr<std::unique_ptr<ColdLog>> ColdLog::Create(const std::string& path, uint32_t row_bytes, Hash hash) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("creating ", path, ": ", std::strerror(errno)));
  return std::unique_ptr<ColdLog>(new ColdLog(fd, row_bytes, hash != nullptr ? hash : DefaultHash));
}

ColdLog::ColdLog(int fd, uint32_t row_bytes, Hash hash)
    : fd_(fd), row_bytes_(row_bytes), record_bytes_(row_bytes + sizeof(uint64_t)), hash_(hash) {
  slots_.assign(size_t{1} << bits_, Slot{0, kEmpty});
  buffer_.reserve(kBufferBytes);
  scratch_.resize(record_bytes_);
}

ColdLog::~ColdLog() { ::close(fd_); }

uint32_t ColdLog::TagOf(uint64_t key) const { return static_cast<uint32_t>(hash_(key) >> 32); }

absl::Status ColdLog::ReadRecord(uint32_t record, char* out) {
  if (record >= flushed_) {
    std::memcpy(out, buffer_.data() + (record - flushed_) * record_bytes_, record_bytes_);
    return absl::OkStatus();
  }
  const off_t offset = static_cast<off_t>(uint64_t{record} * record_bytes_);
  size_t done = 0;
  while (done < record_bytes_) {
    const ssize_t n = ::pread(fd_, out + done, record_bytes_ - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::DataLossError(absl::StrCat("reading cold record ", record, ": ",
                                              n == 0 ? "past the end of the file" : std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ColdLog::KeyOf(uint32_t record) {
  if (auto st = ReadRecord(record, scratch_.data()); !st.ok()) return st;
  uint64_t key;
  std::memcpy(&key, scratch_.data(), sizeof(key));
  return key;
}

absl::StatusOr<size_t> ColdLog::Find(uint64_t key, uint32_t tag) {
  const size_t mask = slots_.size() - 1;
  for (size_t i = Home(tag);; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.record == kEmpty) return SIZE_MAX;
    if (s.tag != tag) continue;
    auto stored = KeyOf(s.record);
    if (!stored.ok()) return stored.status();
    if (*stored == key) return i;
  }
}

absl::StatusOr<size_t> ColdLog::FindPresent(uint64_t key, uint32_t tag) {
  const size_t mask = slots_.size() - 1;
  size_t match = SIZE_MAX;
  for (size_t i = Home(tag); slots_[i].record != kEmpty; i = (i + 1) & mask) {
    if (slots_[i].tag != tag) continue;
    if (match != SIZE_MAX) return Find(key, tag);  // two candidates: read them
    match = i;
  }
  return match;
}

void ColdLog::Place(uint32_t tag, uint32_t record) {
  const size_t mask = slots_.size() - 1;
  size_t i = Home(tag);
  while (slots_[i].record != kEmpty) i = (i + 1) & mask;
  slots_[i] = Slot{tag, record};
}

void ColdLog::RemoveSlot(size_t slot) {
  // Linear probing without tombstones: later entries of the same run move
  // back into the hole unless that would put them before their home slot.
  const size_t mask = slots_.size() - 1;
  size_t hole = slot;
  for (size_t i = (hole + 1) & mask; slots_[i].record != kEmpty; i = (i + 1) & mask) {
    const size_t home = Home(slots_[i].tag);
    // Whether home lies cyclically in (hole, i]: then the entry stays.
    const bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
    if (stays) continue;
    slots_[hole] = slots_[i];
    hole = i;
  }
  slots_[hole] = Slot{0, kEmpty};
}

void ColdLog::Grow() {
  std::vector<Slot> old;
  old.swap(slots_);
  ++bits_;
  slots_.assign(size_t{1} << bits_, Slot{0, kEmpty});
  for (const Slot& s : old) {
    if (s.record != kEmpty) Place(s.tag, s.record);
  }
}

absl::Status ColdLog::Put(uint64_t key, const void* row, Known known) {
  if (records_ >= kEmpty) return absl::ResourceExhaustedError("cold log full (2^32 - 1 records)");
  const uint32_t tag = TagOf(key);
  absl::StatusOr<size_t> found = SIZE_MAX;
  if (known == Known::kMaybe) found = Find(key, tag);
  if (known == Known::kPresent) found = FindPresent(key, tag);
  if (!found.ok()) return found.status();
  const auto record = static_cast<uint32_t>(records_);
  const size_t at = buffer_.size();
  buffer_.resize(at + record_bytes_);
  std::memcpy(buffer_.data() + at, &key, sizeof(key));
  std::memcpy(buffer_.data() + at + sizeof(key), row, row_bytes_);
  ++records_;
  if (*found != SIZE_MAX) {
    slots_[*found].record = record;  // the old copy is garbage now
  } else {
    if ((keys_ + 1) * 4 > slots_.size() * 3) Grow();
    Place(tag, record);
    ++keys_;
  }
  if (buffer_.size() + record_bytes_ > kBufferBytes) return Flush();
  return absl::OkStatus();
}

absl::StatusOr<bool> ColdLog::Get(uint64_t key, void* row) {
  const uint32_t tag = TagOf(key);
  auto found = Find(key, tag);
  if (!found.ok()) return found.status();
  if (*found == SIZE_MAX) return false;
  // Find() read this record last: its bytes are in scratch_.
  std::memcpy(row, scratch_.data() + sizeof(uint64_t), row_bytes_);
  return true;
}

absl::StatusOr<bool> ColdLog::Erase(uint64_t key) {
  auto found = Find(key, TagOf(key));
  if (!found.ok()) return found.status();
  if (*found == SIZE_MAX) return false;
  RemoveSlot(*found);
  --keys_;
  return true;
}

absl::Status ColdLog::Flush() {
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::pwrite(fd_, buffer_.data() + done, buffer_.size() - done,
                               static_cast<off_t>(flushed_ * record_bytes_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::UnavailableError(absl::StrCat("writing the cold log: ", std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  flushed_ = records_;
  buffer_.clear();
  return absl::OkStatus();
}

}  // namespace sparta
