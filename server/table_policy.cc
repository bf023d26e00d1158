#include "server/table_policy.h"

namespace sparta {

TablePolicy ResolveTablePolicy(const pb::TableSpec& spec, const Config& config) {
  const TablePolicyConfig& c = config.embedding.For(spec.name());
  TablePolicy p;
  p.eviction = c.eviction_policy == "lfu"      ? EvictionPolicy::kLfu
               : c.eviction_policy == "s3fifo" ? EvictionPolicy::kS3Fifo
                                               : EvictionPolicy::kLru;
  const bool plain = spec.kind() == pb::TableSpec::DENSE || spec.name().rfind("sparta.", 0) == 0;
  if (plain) return p;
  p.min_count = static_cast<uint32_t>(c.admission_min_count);
  p.probability = c.admission_probability;
  p.counter_bytes = c.admission_counter_bytes_value;
  p.seed = static_cast<uint64_t>(config.model.seed);
  if (auto ttl = ParseCheckpointEvery(c.ttl); ttl.ok()) {
    p.ttl_seconds = ttl->seconds;
    p.ttl_steps = ttl->steps;
  }
  return p;
}

}  // namespace sparta
