// DuplicateFilter: remembers which (sender, sequence) pairs a server has
// already applied, so that a worker may resend a push (after a timeout or a
// failover) without the update being applied twice.
//
// Per sender it keeps the highest sequence seen and a bitmap of the
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

  // Whether (sender, seq) was recorded (or is too old to tell, which counts
  // as seen).
  bool Contains(uint32_t sender, uint64_t seq) const {
    auto it = senders_.find(sender);
    if (it == senders_.end() || seq > it->second.highest) return false;
    const uint64_t age = it->second.highest - seq;
    return age >= kWindow || it->second.seen.test(age);
  }

  // Records (sender, seq) as applied. The server checks Contains() first and
  // records only a request it accepted, so that a push refused here (wrong
  // shard, wrong epoch) is still applied if it comes back after a failover.
  void Record(uint32_t sender, uint64_t seq) {
    Window& w = senders_[sender];
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
  absl::flat_hash_map<uint32_t, Window> senders_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_DUPLICATE_FILTER_H_
