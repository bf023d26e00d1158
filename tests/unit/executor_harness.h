// ExecutorHarness: one ShardExecutor on its own thread, one table, and the
// requests a server's I/O thread would hand it, without sockets. For unit
// tests of what the executor does with requests (bsp step sums, the cold
// tier's eviction policy). Owns the executor, its table registry and its
// done mailbox; used from the test's thread only.
#ifndef SPARTA_TESTS_UNIT_EXECUTOR_HARNESS_H_
#define SPARTA_TESTS_UNIT_EXECUTOR_HARNESS_H_

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "server/row_store.h"
#include "server/shard_executor.h"

namespace sparta {

// Table 1, `name`: sparse rows of `dim` floats from U(-0.1, 0.1), Adagrad at
// `learning_rate` (initial accumulator 0.1).
inline pb::TableSpec AdagradTable(const std::string& name, uint32_t dim, float learning_rate) {
  pb::TableSpec spec;
  spec.set_id(1);
  spec.set_name(name);
  spec.set_dim(dim);
  spec.mutable_optimizer()->set_type(pb::OptimizerSpec::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(learning_rate);
  spec.mutable_optimizer()->set_initial_accumulator(0.1f);
  spec.mutable_initializer()->set_type(pb::InitializerSpec::UNIFORM);
  spec.mutable_initializer()->set_scale(0.1f);
  return spec;
}

// A fresh RowStore with table 1, in a folder of its own under the system's
// temporary folder; both go when it does, so it must outlive the executors
// that use it (declare it first).
struct ScratchStore {
  explicit ScratchStore(const std::string& name)
      : dir(std::filesystem::temp_directory_path() / (name + "-" + std::to_string(getpid()))) {
    std::filesystem::remove_all(dir);
    auto opened = RowStore::Open(dir.string(), /*wal=*/false, /*fresh=*/true, 8 << 20);
    REQUIRE(opened.ok());
    store = std::move(*opened);
    REQUIRE(store->AddTable(1).ok());
  }
  ~ScratchStore() {
    store.reset();
    std::filesystem::remove_all(dir);
  }
  const std::filesystem::path dir;
  std::unique_ptr<RowStore> store;
};

struct ExecutorHarness {
  // The table is `spec`, under the embedding policies of `job` (admission,
  // eviction); every key is in virtual shard 0 of 1.
  ExecutorHarness(const pb::TableSpec& table_spec, const ShardExecutor::Options& options, Config job = {})
      : config(std::move(job)), spec(table_spec), tables(&config) {
    REQUIRE(tables.Create(spec).ok());
    table = tables.Find(spec.id());
    executor = std::make_unique<ShardExecutor>(0, 1, /*num_shards=*/1, &done, options);
    executor->Start();
  }
  ~ExecutorHarness() { executor->Stop(); }

  // A request of `clock` (its step; 0: none) for `keys`, with `grads` for a push.
  // A pull may read staged versions (`overlays`, newest first), as a
  // serving cluster's server hands them on.
  std::shared_ptr<Request> Send(pb::MsgType type, uint64_t clock, std::vector<uint64_t> keys,
                                std::vector<float> grads = {},
                                std::vector<std::shared_ptr<const VersionOverlay>> overlays = {}) {
    auto r = std::make_shared<Request>();
    r->table = table;
    r->overlays = std::move(overlays);
    r->message.header.set_type(type);
    r->message.header.set_clock(clock);
    r->message.header.set_num_keys(static_cast<uint32_t>(keys.size()));
    r->key_scratch = std::move(keys);
    r->keys = r->key_scratch;
    r->grad_scratch = std::move(grads);
    r->grads = r->grad_scratch;
    if (type == pb::PULL) {
      // As the server leaves it: not zeroed. A NaN in every place, so that
      // one the executor fails to write shows in the values pulled.
      r->values.resize(r->keys.size() * spec.dim());
      std::fill(r->values.begin(), r->values.end(), std::numeric_limits<float>::quiet_NaN());
    }
    r->pending.store(1);
    ShardTask task;
    task.request = r;
    for (uint32_t i = 0; i < r->keys.size(); ++i) {
      task.positions.push_back(i);
      task.local_shards.push_back(0);
    }
    executor->Submit(std::move(task));
    return r;
  }
  // Waits (up to a minute) until `r` is handed back as done.
  void WaitFor(const std::shared_ptr<Request>& r) {
    while (std::find(finished.begin(), finished.end(), r) == finished.end()) {
      pollfd p{done.fd(), POLLIN, 0};
      REQUIRE(poll(&p, 1, 60000) == 1);
      done.Drain(&finished);
    }
    finished.erase(std::find(finished.begin(), finished.end(), r));
  }
  // Sends a request and waits for it.
  std::shared_ptr<Request> Call(pb::MsgType type, uint64_t clock, std::vector<uint64_t> keys,
                                std::vector<float> grads = {},
                                std::vector<std::shared_ptr<const VersionOverlay>> overlays = {}) {
    auto r = Send(type, clock, std::move(keys), std::move(grads), std::move(overlays));
    WaitFor(r);
    return r;
  }
  // A PULL of `keys`, waited for: the values.
  std::vector<float> Pull(uint64_t clock, std::vector<uint64_t> keys,
                          std::vector<std::shared_ptr<const VersionOverlay>> overlays = {}) {
    auto r = Call(pb::PULL, clock, std::move(keys), {}, std::move(overlays));
    return std::vector<float>(r->values.begin(), r->values.end());
  }
  // Runs `fn` on the executor's thread, in order with the requests, and
  // waits for it.
  void RunThere(std::function<void()> fn) {
    std::promise<void> ran;
    ShardTask task;
    task.control = [&] {
      fn();
      ran.set_value();
    };
    executor->Submit(std::move(task));
    REQUIRE(ran.get_future().wait_for(std::chrono::minutes(1)) == std::future_status::ready);
  }

  Config config;
  pb::TableSpec spec;
  TableRegistry tables;
  const TableEntry* table = nullptr;
  Mailbox<std::shared_ptr<Request>> done;
  std::deque<std::shared_ptr<Request>> finished;
  std::unique_ptr<ShardExecutor> executor;
};

}  // namespace sparta

#endif  // SPARTA_TESTS_UNIT_EXECUTOR_HARNESS_H_
