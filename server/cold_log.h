// ColdLog: an append-only file of fixed-size records, each a key and the
// bytes of its row, with a compact in-memory index from a key to the record
// that holds its newest copy. It is the store the cold tier is to move to
// (README, "How far the store is from its floor"): a row that goes cold is
// one append to a write buffer, a cold row read back is one pread, and
// nothing is merged. sparta-cold-store-bench measures it against RowStore.
//
// The index keeps 8 bytes a slot (the top 32 bits of the key's hash and a
// record number) at most 3/4 full, 10.7-21 bytes per key, where a hash map
// of keys and offsets keeps about 36. It does not keep the key: a read
// checks the key stored in the record, and a key whose hash shares those
// 32 bits with another's (about one lookup in 2^32 / keys) costs one more
// read. Records are never rewritten: a new copy of a key goes to the end,
// and the old one becomes garbage in the file (dead_records()); taking the
// garbage back (rewriting the live records) is not done here.
//
// Not thread-safe: one thread uses a ColdLog.
#ifndef SPARTA_SERVER_COLD_LOG_H_
#define SPARTA_SERVER_COLD_LOG_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sparta {

class ColdLog {
 public:
  // The hash the index places keys by; tests give a weak one to make keys
  // collide.
  using Hash = uint64_t (*)(uint64_t key);

  // Creates (truncating) the file at `path` for records of `row_bytes`.
  static absl::StatusOr<std::unique_ptr<ColdLog>> Create(const std::string& path, uint32_t row_bytes,
                                                         Hash hash = nullptr);
  ~ColdLog();
  ColdLog(const ColdLog&) = delete;
  ColdLog& operator=(const ColdLog&) = delete;

  // What the caller knows of `key` when it puts a row: an executor knows
  // which of its rows the store holds (TableShard::stored()).
  enum class Known {
    kMaybe,    // nothing: a key sharing the index's bits costs a read
    kAbsent,   // the log has no row of the key: no lookup at all
    kPresent,  // the log has one: a read only if another key shares its bits
  };
  // Makes `row` (row_bytes) the newest copy of `key`'s row. A wrong
  // kAbsent or kPresent leaves the index wrong for that key.
  absl::Status Put(uint64_t key, const void* row, Known known = Known::kMaybe);
  // Copies the newest copy of `key`'s row to `row`: false if the log has none.
  absl::StatusOr<bool> Get(uint64_t key, void* row);
  // Forgets `key` (its record becomes garbage): false if the log had none.
  absl::StatusOr<bool> Erase(uint64_t key);
  // Writes the buffered records to the file (Get() reads them either way).
  absl::Status Flush();

  size_t keys() const { return keys_; }
  uint64_t records() const { return records_; }
  uint64_t dead_records() const { return records_ - keys_; }
  // DRAM the index holds.
  size_t index_bytes() const { return slots_.capacity() * sizeof(Slot); }
  uint64_t file_bytes() const { return records_ * record_bytes_; }

 private:
  struct Slot {
    uint32_t tag;
    uint32_t record;  // kEmpty: a free slot
  };
  static constexpr uint32_t kEmpty = 0xffffffffu;
  static constexpr size_t kBufferBytes = 1 << 20;

  ColdLog(int fd, uint32_t row_bytes, Hash hash);
  uint32_t TagOf(uint64_t key) const;
  size_t Home(uint32_t tag) const { return tag >> (32 - bits_); }
  // The slot holding `key`'s record, or SIZE_MAX; reads candidates' keys.
  absl::StatusOr<size_t> Find(uint64_t key, uint32_t tag);
  // The slot of a key known to be there: the only one with its tag, or
  // else found by reading the candidates' keys.
  absl::StatusOr<size_t> FindPresent(uint64_t key, uint32_t tag);
  absl::StatusOr<uint64_t> KeyOf(uint32_t record);
  absl::Status ReadRecord(uint32_t record, char* out);
  void Place(uint32_t tag, uint32_t record);
  void RemoveSlot(size_t slot);
  void Grow();

  const int fd_;
  const uint32_t row_bytes_, record_bytes_;
  const Hash hash_;
  int bits_ = 4;  // the index has 2^bits_ slots
  std::vector<Slot> slots_;
  size_t keys_ = 0;
  uint64_t records_ = 0;  // appended, buffered ones included
  uint64_t flushed_ = 0;  // records in the file
  std::vector<char> buffer_;
  std::vector<char> scratch_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_COLD_LOG_H_
