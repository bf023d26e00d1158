// ColdLog: an append-only file of fixed-size records, each a key and the
// bytes of its row, with a compact in-memory index from a key to the record
// that holds its newest copy. It is the store the cold tier is to move to
// (README, "How far the store is from its floor"): a row that goes cold is
// one append to a write buffer, a cold row read back is one pread, and
// nothing is merged. sparta-cold-store-bench measures it against RowStore.
//
// The index keeps 8 bytes a slot (the top 32 bits of the key's hash and a
// record number) between 7/10 and 7/8 full, 9.1-11.4 bytes per key, where
// a hash map of keys and offsets keeps about 36. A key's home slot is its
// tag scaled to the table's size, so the table grows by a quarter at a
// time, rehashed from the tags alone. It does not keep the key: a read
// checks the key stored in the record, and a key whose hash shares those
// 32 bits with another's (about one lookup in 2^32 / keys) costs one more
// read. Records are never rewritten: a new copy of a key goes to the end,
// and the old one becomes garbage in the file (dead_records()). The owner
// moves the live records elsewhere, all at once (ForEachLive(), one
// sequential pass, then Clear()) or the oldest a batch at a time
// (MoveOldest()), which is also how garbage is taken back.
//
// Not thread-safe: one thread uses a ColdLog.
#ifndef SPARTA_SERVER_COLD_LOG_H_
#define SPARTA_SERVER_COLD_LOG_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
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
  // Calls visit(key, row) for each key's newest row, in the order they
  // were put, reading the file once from start to end; stops at an error.
  using Visitor = std::function<absl::Status(uint64_t key, const char* row)>;
  absl::Status ForEachLive(const Visitor& visit);
  // Forgets every key and empties the file; the index's memory is freed.
  absl::Status Clear();
  // Moves the oldest records out, `max_records` at most from the first not
  // moved yet: visit(key, row) for each that is its key's newest copy, then
  // commit() (the caller writes what it was given elsewhere), and only if
  // that succeeds are those keys forgotten, the records' disk space given
  // back (a hole punched in the file) and the index's parts shrunk where
  // they are mostly empty. The log is cleared once every record is moved.
  // So a log that may grow no further becomes a window of the newest rows
  // in front of another store. Returns how many records were passed.
  absl::StatusOr<size_t> MoveOldest(size_t max_records, const Visitor& visit,
                                    const std::function<absl::Status()>& commit);
  // Records not moved out yet (live or garbage).
  uint64_t unmoved() const { return records_ - moved_; }

  uint32_t row_bytes() const { return row_bytes_; }
  size_t keys() const { return keys_; }
  uint64_t records() const { return records_; }
  uint64_t dead_records() const { return records_ - moved_ - keys_; }
  // DRAM the index holds.
  size_t index_bytes() const { return index_bytes_; }
  // Bytes of records not moved out (the disk the file takes, but for the
  // pages shared with moved ones).
  uint64_t file_bytes() const { return (records_ - moved_) * record_bytes_; }

 private:
  struct Slot {
    uint32_t tag;
    uint32_t record;  // kEmpty: a free slot
  };
  static constexpr uint32_t kEmpty = 0xffffffffu;
  static constexpr size_t kBufferBytes = 1 << 20;
  static constexpr size_t kMinSlots = 16;

  ColdLog(int fd, uint32_t row_bytes, Hash hash);
  // The index is kParts tables, each a key's by the low bits of its hash,
  // that grow one at a time: growing one holds its old and new slots
  // together, which for one table of all keys would be a passing 2.25x
  // of the index's memory.
  static constexpr size_t kParts = 64;
  struct Part {
    std::vector<Slot> slots;
    size_t keys = 0;
  };
  // Where a key's slot is: its part, and its tag.
  struct Place {
    Part* part;
    uint32_t tag;
  };
  Place Locate(uint64_t key);
  // The tag scaled to [0, slots): a part need not be a power of two.
  static size_t Home(const Part& p, uint32_t tag) {
    return static_cast<size_t>((uint64_t{tag} * p.slots.size()) >> 32);
  }
  static size_t Next(const Part& p, size_t slot) { return slot + 1 == p.slots.size() ? 0 : slot + 1; }
  // Whether `record`, which holds `key`, is the key's newest copy.
  bool Live(uint64_t key, uint32_t record);
  // The slot holding `key`'s record, or SIZE_MAX; reads candidates' keys.
  absl::StatusOr<size_t> Find(uint64_t key, const Place& at);
  // The slot of a key known to be there: the only one with its tag, or
  // else found by reading the candidates' keys.
  absl::StatusOr<size_t> FindPresent(uint64_t key, const Place& at);
  absl::StatusOr<uint64_t> KeyOf(uint32_t record);
  absl::Status ReadRecord(uint32_t record, char* out);
  // `count` records from the file (not the buffer), from `record` on.
  absl::Status ReadRecords(uint32_t record, size_t count, char* out);
  static void Insert(Part& p, uint32_t tag, uint32_t record);
  static void RemoveSlot(Part& p, size_t slot);
  // Rehashes part `p` into `slots` slots.
  void Resize(Part& p, size_t slots);
  // Removes `key`'s slot if it names `record` (no read: the record's key is known).
  void Forget(uint64_t key, uint32_t record);
  void PunchHole(uint64_t first, uint64_t end);

  const int fd_;
  const uint32_t row_bytes_, record_bytes_;
  const Hash hash_;
  std::array<Part, kParts> parts_;
  size_t index_bytes_ = 0;
  size_t keys_ = 0;
  uint64_t records_ = 0;  // appended, buffered ones included
  uint64_t flushed_ = 0;  // records in the file
  uint64_t moved_ = 0;    // records before this one were moved out (MoveOldest())
  std::vector<char> buffer_;
  std::vector<char> scratch_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_COLD_LOG_H_
