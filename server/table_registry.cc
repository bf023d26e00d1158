#include "server/table_registry.h"

#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "common/message.h"

namespace sparta {

absl::Status TableRegistry::Create(const pb::TableSpec& spec) {
  if (spec.id() >= kMaxTables) {
    return absl::InvalidArgumentError(absl::StrCat("table id ", spec.id(), " exceeds ", kMaxTables));
  }
  if (spec.dim() == 0 || spec.dim() > kMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat("table '", spec.name(), "': bad dim ", spec.dim()));
  }
  if (const TableEntry* existing = Find(spec.id())) {
    if (google::protobuf::util::MessageDifferencer::Equals(existing->spec, spec)) return absl::OkStatus();
    return absl::AlreadyExistsError(absl::StrCat("table ", spec.id(), " ('", existing->spec.name(),
                                                 "') already exists with a different spec"));
  }
  auto optimizer = Optimizer::Create(spec.optimizer());
  if (!optimizer.ok()) return optimizer.status();
  if (tables_.size() <= spec.id()) tables_.resize(spec.id() + 1);
  tables_[spec.id()] = std::make_unique<TableEntry>(TableEntry{spec, *std::move(optimizer), ResolveTablePolicy(spec, *config_)});
  return absl::OkStatus();
}

}  // namespace sparta
