#include "server/change_log.h"

#include <algorithm>

namespace sparta {
namespace {

template <typename T>
void SortUnique(std::vector<T>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

}  // namespace

void ChangeLog::Compact() {
  SortUnique(&rows_);
  compact_at_ = std::max(kMinCompact, 2 * rows_.size());
}

void ChangeLog::Merge(const Changes& from, Changes* into) {
  into->rows.insert(into->rows.end(), from.rows.begin(), from.rows.end());
  into->replaced.insert(into->replaced.end(), from.replaced.begin(), from.replaced.end());
}

ChangeLog::Changes ChangeLog::Cut(uint64_t version, uint64_t base) {
  cuts_.erase(cuts_.begin(), cuts_.upper_bound(base));
  Changes current;
  SortUnique(&rows_);
  SortUnique(&replaced_);
  current.rows.swap(rows_);
  current.replaced.swap(replaced_);
  compact_at_ = kMinCompact;
  Changes since_base;
  for (const auto& [v, changes] : cuts_) Merge(changes, &since_base);
  Merge(current, &since_base);
  if (!cuts_.empty()) {
    SortUnique(&since_base.rows);
    SortUnique(&since_base.replaced);
  }
  cuts_[version] = std::move(current);
  return since_base;
}

size_t ChangeLog::bytes() const {
  size_t n = rows_.capacity() * sizeof(Row) + replaced_.capacity() * sizeof(uint32_t);
  for (const auto& [v, changes] : cuts_) {
    n += changes.rows.capacity() * sizeof(Row) + changes.replaced.capacity() * sizeof(uint32_t);
  }
  return n;
}

}  // namespace sparta
