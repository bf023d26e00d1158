// TableDecl: a parameter table a model asks the servers to hold.
//
// A sparse table maps 64-bit keys to rows of `dim` floats, created on first
// touch by `initializer`; a dense table is one vector of `dense_size` floats
// (an MLP layer, a bias), stored on the servers in blocks. Each table has
// its own optimizer, applied on the servers; an empty optimizer name means
// the job's: `optimizer` for sparse tables, `optimizer.dense` (if set) for
// dense ones.
//
// Plain structs, part of the plugin ABI (see plugin.h).
#ifndef SPARTA_SDK_TABLE_H_
#define SPARTA_SDK_TABLE_H_

#include <cstdint>
#include <string>

namespace sparta {

enum class TableKind { kSparse, kDense };

struct InitializerDecl {
  enum Type { kZero, kUniform, kNormal, kConstant };
  Type type = kZero;
  float scale = 0;    // U(-scale, scale), N(0, scale^2) or the constant
  uint64_t seed = 0;  // rows are drawn from (seed, key), so any server draws the same row
};

struct OptimizerDecl {
  std::string name;            // "" (the job's) | sgd | adagrad | ftrl | adam
  double learning_rate = -1;   // < 0: the job's
};

struct TableDecl {
  std::string name;
  TableKind kind = TableKind::kSparse;
  uint32_t dim = 1;         // sparse: floats per key
  uint64_t dense_size = 0;  // dense: floats in the table
  InitializerDecl initializer;
  OptimizerDecl optimizer;
};

}  // namespace sparta

#endif  // SPARTA_SDK_TABLE_H_
