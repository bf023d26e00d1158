#include "common/shard_order.h"

namespace sparta {

void OrderByShard(std::span<const uint32_t> shard_of, uint32_t num_shards, std::vector<uint32_t>* ends,
                  std::vector<uint32_t>* order) {
  // Count each shard's keys one slot up, so that the running sum leaves
  // each shard's start in its own slot; placing a key moves its shard's
  // start on, and what is left there at the end is the shard's end.
  std::vector<uint32_t>& next = *ends;
  next.assign(size_t{num_shards} + 1, 0);
  for (uint32_t shard : shard_of) ++next[shard + 1];
  for (size_t s = 1; s < next.size(); ++s) next[s] += next[s - 1];
  order->resize(shard_of.size());
  for (size_t i = 0; i < shard_of.size(); ++i) (*order)[next[shard_of[i]]++] = static_cast<uint32_t>(i);
  next.pop_back();
}

}  // namespace sparta
