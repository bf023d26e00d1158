// DuplicateFilter: remembers which pushes a server has already applied to
// which of its shards, so that a worker may resend a push (after a timeout,
// a failover or a shard move) without the update being applied twice.
//
// A push is named by its worker and sequence number, and recorded per shard
// it updated: a resent push may be split differently from the first time
// (the shard map changed), so one server can get two parts of the same
// push, one from the worker and one forwarded by another shard's primary,
// for different shards; each part is new for its own shards.
//
// Per (shard, sender) it keeps the highest sequence seen and a bitmap of the
// kWindow sequences below it; anything older than the window counts as seen
// (a sender never has that many requests in flight). Not thread-safe: used by
// the server's I/O thread only.
#ifndef SPARTA_SERVER_DUPLICATE_FILTER_H_
#define SPARTA_SERVER_DUPLICATE_FILTER_H_

#include <bitset>
#include <cstdint>

#include "absl/container/flat_hash_map.h"

namespace sparta {

class DuplicateFilter {
 public:
  static constexpr uint64_t kWindow = 4096;

  // Whether (sender, seq) was recorded for `shard` (or is too old to tell,
  // which counts as seen).
  bool Contains(uint32_t shard, uint32_t sender, uint64_t seq) const {
    auto it = windows_.find(KeyOf(shard, sender));
    if (it == windows_.end() || seq > it->second.highest) return false;
    const uint64_t age = it->second.highest - seq;
    return age >= kWindow || it->second.seen.test(age);
  }

  // Records (sender, seq) as applied to `shard`. The server checks
  // Contains() first and records only what it applies, so that a push
  // refused here (wrong shard, wrong epoch) is still applied if it comes
  // back after a failover.
  void Record(uint32_t shard, uint32_t sender, uint64_t seq) {
    Window& w = windows_[KeyOf(shard, sender)];
    if (!w.any || seq > w.highest) {
      const uint64_t shift = w.any ? seq - w.highest : kWindow;
      w.seen = shift >= kWindow ? std::bitset<kWindow>() : (w.seen << shift);
      w.seen.set(0);
      w.highest = seq;
      w.any = true;
      return;
    }
    const uint64_t age = w.highest - seq;
    if (age < kWindow) w.seen.set(age);
  }

 private:
  struct Window {
    bool any = false;
    uint64_t highest = 0;
    std::bitset<kWindow> seen;  // bit i: highest - i was seen
  };
  static uint64_t KeyOf(uint32_t shard, uint32_t sender) { return uint64_t{shard} << 32 | sender; }
  absl::flat_hash_map<uint64_t, Window> windows_;  // by (shard, sender)
};

}  // namespace sparta

#endif  // SPARTA_SERVER_DUPLICATE_FILTER_H_
