// Helpers for propagating absl::Status across module boundaries, in the style
// of RocksDB/Abseil internal macros. Header-only; no state.
#ifndef SPARTA_COMMON_STATUS_MACROS_H_
#define SPARTA_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SPARTA_CONCAT_INNER_(a, b) a##b
#define SPARTA_CONCAT_(a, b) SPARTA_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` is not OK.
#define SPARTA_RETURN_IF_ERROR(expr)              \
  do {                                            \
    ::absl::Status sparta_status_ = (expr);       \
    if (!sparta_status_.ok()) return sparta_status_; \
  } while (0)

// `lhs = value of expr`, or returns its error.
#define SPARTA_ASSIGN_OR_RETURN(lhs, expr) \
  SPARTA_ASSIGN_OR_RETURN_IMPL_(SPARTA_CONCAT_(sparta_or_, __LINE__), lhs, expr)
#define SPARTA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

#endif  // SPARTA_COMMON_STATUS_MACROS_H_
