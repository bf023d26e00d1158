#include "server/cold_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "common/status_macros.h"

namespace sparta {

namespace {
// Not Mix64(key) itself: its top bits pick the key's virtual shard
// (ShardOf), and an executor's log holds the keys of every count-th shard
// only, so their tags would share bits and crowd into part of the index
// (measured: placing a key 30x slower). A salted key hashes independently.
uint64_t DefaultHash(uint64_t key) { return Mix64(key ^ 0x2545f4914f6cdd1dULL); }
}  // namespace

absl::StatusOr<std::unique_ptr<ColdLog>> ColdLog::Create(const std::string& path, uint32_t row_bytes, Hash hash) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("creating ", path, ": ", std::strerror(errno)));
  return std::unique_ptr<ColdLog>(new ColdLog(fd, row_bytes, hash != nullptr ? hash : DefaultHash));
}

ColdLog::ColdLog(int fd, uint32_t row_bytes, Hash hash)
    : fd_(fd), row_bytes_(row_bytes), record_bytes_(row_bytes + sizeof(uint64_t)), hash_(hash) {
  for (Part& part : parts_) part.slots.assign(kMinSlots, Slot{0, kEmpty});
  index_bytes_ = kParts * kMinSlots * sizeof(Slot);
  buffer_.reserve(kBufferBytes);
  scratch_.resize(record_bytes_);
}

ColdLog::~ColdLog() { ::close(fd_); }

ColdLog::Place ColdLog::Locate(uint64_t key) {
  const uint64_t hash = hash_(key);
  return {&parts_[hash & (kParts - 1)], static_cast<uint32_t>(hash >> 32)};
}

absl::Status ColdLog::ReadRecord(uint32_t record, char* out) {
  if (record >= flushed_) {
    std::memcpy(out, buffer_.data() + (record - flushed_) * record_bytes_, record_bytes_);
    return absl::OkStatus();
  }
  return ReadRecords(record, 1, out);
}

absl::Status ColdLog::ReadRecords(uint32_t record, size_t count, char* out) {
  const off_t offset = static_cast<off_t>(uint64_t{record} * record_bytes_);
  const size_t bytes = count * record_bytes_;
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd_, out + done, bytes - done, offset + static_cast<off_t>(done));
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

absl::StatusOr<size_t> ColdLog::Find(uint64_t key, const Place& at) {
  const Part& p = *at.part;
  const uint32_t tag = at.tag;
  for (size_t i = Home(p, tag);; i = Next(p, i)) {
    const Slot& s = p.slots[i];
    if (s.record == kEmpty) return SIZE_MAX;
    if (s.tag != tag) continue;
    auto stored = KeyOf(s.record);
    if (!stored.ok()) return stored.status();
    if (*stored == key) return i;
  }
}

absl::StatusOr<size_t> ColdLog::FindPresent(uint64_t key, const Place& at) {
  const Part& p = *at.part;
  size_t match = SIZE_MAX;
  for (size_t i = Home(p, at.tag); p.slots[i].record != kEmpty; i = Next(p, i)) {
    if (p.slots[i].tag != at.tag) continue;
    if (match != SIZE_MAX) return Find(key, at);  // two candidates: read them
    match = i;
  }
  return match;
}

void ColdLog::Insert(Part& p, uint32_t tag, uint32_t record) {
  size_t i = Home(p, tag);
  while (p.slots[i].record != kEmpty) i = Next(p, i);
  p.slots[i] = Slot{tag, record};
}

void ColdLog::RemoveSlot(Part& p, size_t slot) {
  // Linear probing without tombstones: later entries of the same run move
  // back into the hole unless that would put them before their home slot.
  size_t hole = slot;
  for (size_t i = Next(p, hole); p.slots[i].record != kEmpty; i = Next(p, i)) {
    const size_t home = Home(p, p.slots[i].tag);
    // Whether home lies cyclically in (hole, i]: then the entry stays.
    const bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
    if (stays) continue;
    p.slots[hole] = p.slots[i];
    hole = i;
  }
  p.slots[hole] = Slot{0, kEmpty};
}

void ColdLog::Resize(Part& p, size_t slots) {
  std::vector<Slot> old;
  old.swap(p.slots);
  // One part at a time: the old slots and the new are both held only for
  // a part, 1/kParts of the index. Homes come from the stored tags
  // (Home()), so resizing needs no key.
  p.slots.assign(slots, Slot{0, kEmpty});
  index_bytes_ = index_bytes_ - old.size() * sizeof(Slot) + slots * sizeof(Slot);
  for (const Slot& s : old) {
    if (s.record != kEmpty) Insert(p, s.tag, s.record);
  }
}

void ColdLog::Forget(uint64_t key, uint32_t record) {
  const Place at = Locate(key);
  Part& p = *at.part;
  for (size_t i = Home(p, at.tag); p.slots[i].record != kEmpty; i = Next(p, i)) {
    if (p.slots[i].record != record) continue;
    RemoveSlot(p, i);
    --p.keys;
    --keys_;
    // Under 7/20 full (half the lowest load growth leaves): back to 7/10.
    if (p.slots.size() > kMinSlots && p.keys * 20 < p.slots.size() * 7) {
      Resize(p, std::max(kMinSlots, p.keys * 10 / 7 + 1));
    }
    return;
  }
}

void ColdLog::PunchHole(uint64_t first, uint64_t end) {
  // Every record before `end` is moved out: whole pages from the one
  // `first` starts in (what precedes it was moved before) up to the one
  // `end` starts in. Only disk space is at stake: a file system that
  // cannot punch holes keeps the bytes until the log is cleared.
  constexpr uint64_t kPage = 4096;
  const uint64_t from = first * record_bytes_ / kPage * kPage;
  const uint64_t to = end * record_bytes_ / kPage * kPage;
  if (to > from) {
    (void)::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
                      static_cast<off_t>(to - from));
  }
}

absl::StatusOr<size_t> ColdLog::MoveOldest(size_t max_records, const Visitor& visit,
                                           const std::function<absl::Status()>& commit) {
  SPARTA_RETURN_IF_ERROR(Flush());
  const uint64_t first = moved_;
  const uint64_t end = std::min<uint64_t>(records_, first + max_records);
  const size_t n = static_cast<size_t>(end - first);
  if (n == 0) return 0;
  std::vector<char> run(n * record_bytes_);
  SPARTA_RETURN_IF_ERROR(ReadRecords(static_cast<uint32_t>(first), n, run.data()));
  std::vector<std::pair<uint64_t, uint32_t>> live;  // (key, record) of the newest copies
  for (size_t j = 0; j < n; ++j) {
    const char* record = run.data() + j * record_bytes_;
    uint64_t key;
    std::memcpy(&key, record, sizeof(key));
    const auto number = static_cast<uint32_t>(first + j);
    if (!Live(key, number)) continue;
    SPARTA_RETURN_IF_ERROR(visit(key, record + sizeof(key)));
    live.emplace_back(key, number);
  }
  // Forgotten only once the rows are safe elsewhere.
  SPARTA_RETURN_IF_ERROR(commit());
  for (const auto& [key, number] : live) Forget(key, number);
  moved_ = end;
  if (moved_ == records_) {
    SPARTA_RETURN_IF_ERROR(Clear());
  } else {
    PunchHole(first, end);
  }
  return n;
}

absl::Status ColdLog::Put(uint64_t key, const void* row, Known known) {
  if (records_ >= kEmpty) return absl::ResourceExhaustedError("cold log full (2^32 - 1 records)");
  const Place at = Locate(key);
  Part& p = *at.part;
  absl::StatusOr<size_t> found = SIZE_MAX;
  if (known == Known::kMaybe) found = Find(key, at);
  if (known == Known::kPresent) found = FindPresent(key, at);
  if (!found.ok()) return found.status();
  const auto record = static_cast<uint32_t>(records_);
  const size_t end = buffer_.size();
  buffer_.resize(end + record_bytes_);
  std::memcpy(buffer_.data() + end, &key, sizeof(key));
  std::memcpy(buffer_.data() + end + sizeof(key), row, row_bytes_);
  ++records_;
  if (*found != SIZE_MAX) {
    p.slots[*found].record = record;  // the old copy is garbage now
  } else {
    // A quarter more slots, not twice as many: a part stays between 7/10
    // and 7/8 full (about 10 bytes a key) where doubling left it between
    // 7/16 and 7/8 (about 14).
    if ((p.keys + 1) * 8 > p.slots.size() * 7) Resize(p, p.slots.size() + p.slots.size() / 4);
    Insert(p, at.tag, record);
    ++p.keys;
    ++keys_;
  }
  if (buffer_.size() + record_bytes_ > kBufferBytes) return Flush();
  return absl::OkStatus();
}

absl::StatusOr<bool> ColdLog::Get(uint64_t key, void* row) {
  auto found = Find(key, Locate(key));
  if (!found.ok()) return found.status();
  if (*found == SIZE_MAX) return false;
  // Find() read this record last: its bytes are in scratch_.
  std::memcpy(row, scratch_.data() + sizeof(uint64_t), row_bytes_);
  return true;
}

absl::StatusOr<bool> ColdLog::Erase(uint64_t key) {
  const Place at = Locate(key);
  auto found = Find(key, at);
  if (!found.ok()) return found.status();
  if (*found == SIZE_MAX) return false;
  RemoveSlot(*at.part, *found);
  --at.part->keys;
  --keys_;
  return true;
}

bool ColdLog::Live(uint64_t key, uint32_t record) {
  const Place at = Locate(key);
  const Part& p = *at.part;
  for (size_t i = Home(p, at.tag); p.slots[i].record != kEmpty; i = Next(p, i)) {
    if (p.slots[i].record == record) return true;
  }
  return false;
}

absl::Status ColdLog::ForEachLive(const Visitor& visit) {
  SPARTA_RETURN_IF_ERROR(Flush());
  // Whole runs of records at a time, in file order: one sequential pass.
  const size_t per_read = std::max<size_t>(1, kBufferBytes / record_bytes_);
  std::vector<char> run(per_read * record_bytes_);
  for (uint64_t first = moved_; first < records_; first += per_read) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(per_read, records_ - first));
    SPARTA_RETURN_IF_ERROR(ReadRecords(static_cast<uint32_t>(first), n, run.data()));
    for (size_t j = 0; j < n; ++j) {
      const char* record = run.data() + j * record_bytes_;
      uint64_t key;
      std::memcpy(&key, record, sizeof(key));
      if (Live(key, static_cast<uint32_t>(first + j))) SPARTA_RETURN_IF_ERROR(visit(key, record + sizeof(key)));
    }
  }
  return absl::OkStatus();
}

absl::Status ColdLog::Clear() {
  buffer_.clear();
  if (::ftruncate(fd_, 0) != 0) {
    return absl::UnavailableError(absl::StrCat("truncating the cold log: ", std::strerror(errno)));
  }
  // A fresh index, its memory given back (the log may have held millions).
  for (Part& part : parts_) {
    std::vector<Slot>(kMinSlots, Slot{0, kEmpty}).swap(part.slots);
    part.keys = 0;
  }
  index_bytes_ = kParts * kMinSlots * sizeof(Slot);
  keys_ = 0;
  records_ = 0;
  flushed_ = 0;
  moved_ = 0;
  return absl::OkStatus();
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
