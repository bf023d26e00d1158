// sparta-row-memory: bytes a server spends per sparse row (hash-map slot +
// arena row with optimizer state), against the row's raw payload (its key,
// weights and optimizer state as packed floats). Runs the server's own
// TableShard in-process; no cluster needed.
#include <cstdio>
#include <string>

#include "common/hash.h"
#include "server/table_shard.h"

int main(int argc, char** argv) {
  const uint64_t rows = argc > 1 ? std::stoull(argv[1]) : 1000000;
  const int shards = 256;  // the default cluster.num_shards, all on one server
  for (uint32_t dim : {8u, 16u}) {
    sparta::pb::TableSpec spec;
    spec.set_dim(dim);
    sparta::pb::OptimizerSpec opt_spec;
    opt_spec.set_type(sparta::pb::OptimizerSpec::ADAGRAD);
    opt_spec.set_learning_rate(0.01f);
    auto optimizer = sparta::Optimizer::Create(opt_spec);
    std::vector<std::unique_ptr<sparta::TableShard>> table;
    for (int s = 0; s < shards; ++s) table.push_back(std::make_unique<sparta::TableShard>(s, &spec, optimizer->get()));
    uint64_t created = 0;
    for (uint64_t k = 0; k < rows; ++k) table[sparta::ShardOf(k, 8)]->FindOrCreate(k, &created);
    size_t bytes = 0;
    for (const auto& t : table) bytes += t->bytes();
    const double payload = 8 + 4.0 * (dim + (*optimizer)->StateFloats(dim));
    std::printf("%-40s %14.2f bytes/row (payload %.0f: %.2fx)\n",
                ("row_memory_dim" + std::to_string(dim) + "_adagrad").c_str(), double(bytes) / rows, payload,
                bytes / rows / payload);
  }
  return 0;
}
