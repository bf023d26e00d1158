// SnapshotRetries: when to stream a shard to a new replica again after a
// stream broke (ShardStreamer's kFailed: the cut or a read failed, or the
// replica could not load a part, e.g. its disk was full).
//
// Without another try the replica would wait for the shard for good: it is
// never promoted, and the shard keeps one whole copy fewer than
// storage.replication_factor says. Tries back off exponentially (1 s, 2 s,
// ... up to 30 s) so that a failure that lasts costs little; a stream that
// ends whole resets the count. Whether the replica still needs the shard
// when a try falls due is the caller's to check (the view may have moved).
//
// Not thread-safe: the server's I/O thread owns it.
#ifndef SPARTA_SERVER_SNAPSHOT_RETRIES_H_
#define SPARTA_SERVER_SNAPSHOT_RETRIES_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace sparta {

class SnapshotRetries {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr Clock::duration kFirstDelay = std::chrono::seconds(1);
  static constexpr Clock::duration kLongestDelay = std::chrono::seconds(30);

  // The stream of `shard` to `peer` broke at `now`: returns when to try
  // again (a try already due stays as it is).
  Clock::duration Failed(uint32_t shard, uint32_t peer, Clock::time_point now) {
    Entry& e = entries_[{shard, peer}];
    Clock::duration delay = kFirstDelay;
    for (int i = 0; i < e.failures && delay < kLongestDelay; ++i) delay *= 2;
    delay = std::min(delay, kLongestDelay);
    ++e.failures;
    e.due = now + delay;
    e.waiting = true;
    return delay;
  }

  // The shard reached the replica whole: its count starts over.
  void Succeeded(uint32_t shard, uint32_t peer) { entries_.erase({shard, peer}); }

  // The (shard, peer) pairs whose try is due at `now`, each once.
  std::vector<std::pair<uint32_t, uint32_t>> TakeDue(Clock::time_point now) {
    std::vector<std::pair<uint32_t, uint32_t>> due;
    for (auto& [key, e] : entries_) {
      if (e.waiting && e.due <= now) {
        e.waiting = false;
        due.push_back(key);
      }
    }
    return due;
  }

  bool empty() const {
    return std::none_of(entries_.begin(), entries_.end(), [](const auto& kv) { return kv.second.waiting; });
  }

 private:
  struct Entry {
    int failures = 0;
    Clock::time_point due;
    bool waiting = false;  // a try is scheduled
  };
  std::map<std::pair<uint32_t, uint32_t>, Entry> entries_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_SNAPSHOT_RETRIES_H_
