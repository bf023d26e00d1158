// The range of table ids: every table a model declares has a small integer
// id, 0 <= id < kMaxTables, which servers use to index their per-table
// arrays (the registry, RocksDB column families, tier statistics) without a
// map on the hot path. One definition for all of them.
#ifndef SPARTA_SERVER_TABLE_IDS_H_
#define SPARTA_SERVER_TABLE_IDS_H_

#include <cstdint>

namespace sparta {

inline constexpr uint32_t kMaxTables = 1024;

}  // namespace sparta

#endif  // SPARTA_SERVER_TABLE_IDS_H_
