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
// (a sender never has that many requests in flight).
//
// The records of a shard travel with its rows: a shard streamed to another
// server (a join, a drain, a new replica) holds the pushes applied before
// its cut, and one of those may yet be resent to the shard's new owner (its
// answer was lost, or it failed on another shard). CopyShard() takes them at
// the cut; the new copy's server merges them (MergeShard) when it takes the
// copy as whole, so that it recognizes such a resend as applied.
//
// Not thread-safe: used by the server's I/O thread only.
#ifndef SPARTA_SERVER_DUPLICATE_FILTER_H_
#define SPARTA_SERVER_DUPLICATE_FILTER_H_

#include <bitset>
#include <cstdint>
#include <span>
#include <vector>

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
    if (!w.any) senders_[shard].push_back(sender);
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

  // The records of `shard`, as words: per sender, its id, its highest seq
  // and the kWindow bits below it (kWordsPerSender words in all).
  static constexpr size_t kWordsPerSender = 2 + kWindow / 64;
  std::vector<uint64_t> CopyShard(uint32_t shard) const {
    std::vector<uint64_t> words;
    auto senders = senders_.find(shard);
    if (senders == senders_.end()) return words;
    for (uint32_t sender : senders->second) {
      const Window& w = windows_.find(KeyOf(shard, sender))->second;  // made with the entry
      const size_t at = words.size();
      words.resize(at + kWordsPerSender, 0);
      words[at] = sender;
      words[at + 1] = w.highest;
      for (size_t age = 0; age < kWindow; ++age) {
        if (w.seen.test(age)) words[at + 2 + age / 64] |= uint64_t{1} << (age % 64);
      }
    }
    return words;
  }

  // Adds the records CopyShard() made (on another server) to those of
  // `shard` here. False, adding nothing, if `words` are not such a copy.
  bool MergeShard(uint32_t shard, std::span<const uint64_t> words) {
    if (words.size() % kWordsPerSender != 0) return false;
    for (size_t at = 0; at < words.size(); at += kWordsPerSender) {
      if (words[at] > 0xffffffffu) return false;
    }
    for (size_t at = 0; at < words.size(); at += kWordsPerSender) {
      const uint32_t sender = static_cast<uint32_t>(words[at]);
      const uint64_t highest = words[at + 1];
      // The highest first: the older ones then only set bits.
      Record(shard, sender, highest);
      for (uint64_t age = 1; age < kWindow && age <= highest; ++age) {
        if (words[at + 2 + age / 64] >> (age % 64) & 1) Record(shard, sender, highest - age);
      }
    }
    return true;
  }

 private:
  struct Window {
    bool any = false;
    uint64_t highest = 0;
    std::bitset<kWindow> seen;  // bit i: highest - i was seen
  };
  static uint64_t KeyOf(uint32_t shard, uint32_t sender) { return uint64_t{shard} << 32 | sender; }
  absl::flat_hash_map<uint64_t, Window> windows_;  // by (shard, sender)
  // shard -> the senders it has windows for, so that CopyShard() need not
  // scan every shard's windows (shards x workers of them).
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> senders_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_DUPLICATE_FILTER_H_
