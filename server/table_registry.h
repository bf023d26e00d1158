// TableRegistry: the tables a server knows, by id, with their optimizers.
//
// Tables are created by CREATE_TABLE requests on the server's I/O thread,
// before any data request for them; entries are never removed or changed, so
// executor threads may read an entry through the pointer a task carries.
// Create()/Find() are called only by the I/O thread.
#ifndef SPARTA_SERVER_TABLE_REGISTRY_H_
#define SPARTA_SERVER_TABLE_REGISTRY_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "server/optimizer.h"
#include "server/table_ids.h"
#include "server/table_policy.h"
#include "sparta.pb.h"

namespace sparta {

struct TableEntry {
  pb::TableSpec spec;
  std::unique_ptr<Optimizer> optimizer;
  TablePolicy policy;  // admission, eviction, expiry (server/table_policy.h)
};

class TableRegistry {
 public:
  // Tables get their policies from `config` (which must outlive this).
  explicit TableRegistry(const Config* config) : config_(config) {}

  // Creates the table, or accepts an identical spec again (every worker
  // declares the model's tables). A different spec under the same id is an
  // error.
  absl::Status Create(const pb::TableSpec& spec);

  // nullptr if the table does not exist.
  const TableEntry* Find(uint32_t id) const {
    return id < tables_.size() ? tables_[id].get() : nullptr;
  }

  // Every table, in id order.
  std::vector<const TableEntry*> All() const {
    std::vector<const TableEntry*> all;
    for (const auto& t : tables_) {
      if (t != nullptr) all.push_back(t.get());
    }
    return all;
  }

 private:
  const Config* const config_;
  std::vector<std::unique_ptr<TableEntry>> tables_;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_TABLE_REGISTRY_H_
