// TablePolicy: how one table's rows live on a server: which rows leave DRAM
// first when the server is over server.memory_limit, when a new key is
// admitted (given a row), and when an untouched row expires. Resolved once
// per table from the config (embedding.* and embedding.tables.<name>.*) when
// the table is created; a plain value, immutable afterwards, so executor
// threads read it without locks.
#ifndef SPARTA_SERVER_TABLE_POLICY_H_
#define SPARTA_SERVER_TABLE_POLICY_H_

#include <cstdint>

#include "common/config.h"
#include "sparta.pb.h"

namespace sparta {

// kLru and kLfu: one CLOCK over every hot row. kS3Fifo (Yang et al., "FIFO
// queues are all you need for cache eviction", SOSP 2023): new rows wait in
// a small FIFO queue, a tenth of the hot rows, and only those used again
// while in it join the main CLOCK; rows read back from the cold tier join
// it at once.
enum class EvictionPolicy { kLru, kLfu, kS3Fifo };

struct TablePolicy {
  EvictionPolicy eviction = EvictionPolicy::kS3Fifo;
  // Admission: a key is given a row once it has occurred min_count times
  // (counted in a sketch of counter_bytes per table and server), or earlier
  // by a draw of probability `probability` per occurrence. min_count <= 1
  // and probability 1: every key at once (no counting at all).
  uint32_t min_count = 0;
  double probability = 1.0;
  uint64_t counter_bytes = 1 << 20;
  uint64_t seed = 0;  // of the admission draws (model.seed)
  // Expiry: 0 = never.
  double ttl_seconds = 0;
  uint64_t ttl_steps = 0;

  bool admits_every_key() const { return min_count <= 1 && probability >= 1.0; }
  bool expires() const { return ttl_seconds > 0 || ttl_steps > 0; }
};

// The policy of `spec` under `config`. Dense tables and Sparta's own tables
// ("sparta.*", e.g. the audit table) admit every key and never expire: a
// missing block of a dense layer, or a missing audit count, would be wrong,
// not merely less trained.
TablePolicy ResolveTablePolicy(const pb::TableSpec& spec, const Config& config);

}  // namespace sparta

#endif  // SPARTA_SERVER_TABLE_POLICY_H_
