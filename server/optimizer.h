// Optimizer: the server-side update rule of one table. Workers push
// gradients; the server owns the weights and applies the rule itself.
//
// A row is laid out as [weights: dim][optimizer state: StateFloats(dim)], in
// one contiguous block of the table's arena, so an update touches one cache
// line run and the kernels are plain loops over `dim` that the compiler
// vectorizes. Immutable after construction; thread-safe.
#ifndef SPARTA_SERVER_OPTIMIZER_H_
#define SPARTA_SERVER_OPTIMIZER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "sparta.pb.h"

namespace sparta {

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Floats of state per row after the `dim` weights.
  virtual uint32_t StateFloats(uint32_t dim) const = 0;

  // Sets the state of a row whose weights were just initialized.
  virtual void InitState(float* row, uint32_t dim) const = 0;

  // Applies gradient `grad` (dim floats) to `row`.
  virtual void Apply(float* row, const float* grad, uint32_t dim) const = 0;

  static absl::StatusOr<std::unique_ptr<Optimizer>> Create(const pb::OptimizerSpec& spec);
};

}  // namespace sparta

#endif  // SPARTA_SERVER_OPTIMIZER_H_
