// DenseCache: a worker process's copy of its dense tables (MLP layers,
// biases), shared by its compute threads.
//
// Every step needs every dense table, so N compute threads pulling their
// own copies would pull each table N times per round of steps. Instead a
// thread asks the cache for a table "as fresh as my last push": the worker
// has one connection per server, whose requests the servers serve in order,
// so any pull posted after that push reflects it. The cache keeps the
// latest pull of each table (in flight or done) with the number of pushes
// posted before it, and hands it out when it is fresh enough, issuing a new
// pull only when not. One thread therefore pulls exactly as often as
// before; several threads stepping together share their pulls. Under bsp
// a thread past the step's barrier asks for "as fresh as every push so
// far" (mark()): every thread's push of the step was posted before the
// barrier opened, so the first thread through pulls and the others share.
//
// Thread-safe. Snapshots are immutable once their pull completes and live as
// long as a step holds them.
#ifndef SPARTA_WORKER_DENSE_CACHE_H_
#define SPARTA_WORKER_DENSE_CACHE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <span>
#include <vector>

#include "sparta.pb.h"
#include "worker/kv_client.h"

namespace sparta {

// The block numbers a dense table is stored under: 0 .. blocks-1.
inline std::vector<uint64_t> DenseBlockKeys(const pb::TableSpec& table) {
  std::vector<uint64_t> keys((table.dense_size() + table.dim() - 1) / table.dim());
  std::iota(keys.begin(), keys.end(), 0);
  return keys;
}

class DenseCache {
 public:
  struct Snapshot {
    std::vector<float> values;  // the table's blocks, padded to whole blocks
    KVClient::Ticket pull;      // Wait() on it before reading `values`
  };

  // Posts a pull of `keys` of `table` into `out` (KVClient::Pull).
  using Puller = std::function<KVClient::Ticket(const pb::TableSpec& table, std::span<const uint64_t> keys,
                                                float* out, uint64_t clock)>;

  // `tables`: the job's tables in model order (only dense ones are cached).
  DenseCache(KVClient* client, const std::vector<pb::TableSpec>& tables)
      : DenseCache(
            [client](const pb::TableSpec& table, std::span<const uint64_t> keys, float* out, uint64_t clock) {
              return client->Pull(table.id(), table.dim(), keys, out, clock);
            },
            tables) {}
  DenseCache(Puller pull, const std::vector<pb::TableSpec>& tables) : pull_(std::move(pull)), tables_(tables) {
    latest_.resize(tables.size());
    for (size_t t = 0; t < tables.size(); ++t) {
      if (tables[t].kind() == pb::TableSpec::DENSE) keys_.push_back(DenseBlockKeys(tables[t]));
    }
  }

  // A caller has just posted pushes; returns the mark a snapshot must reach
  // to reflect them.
  uint64_t NotePushes() {
    std::lock_guard<std::mutex> lock(mu_);
    return ++pushes_posted_;
  }

  // The mark of every push posted so far (without posting one).
  uint64_t mark() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pushes_posted_;
  }

  // Table `t` as of at least `mark` (see NotePushes; 0: any). `clock` goes
  // on a new pull (worker.consistency bsp).
  std::shared_ptr<const Snapshot> Get(size_t t, uint64_t mark, uint64_t clock) {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = latest_[t];
    if (e.snapshot != nullptr && e.mark >= mark) {
      ++shared_;
      return e.snapshot;
    }
    auto snapshot = std::make_shared<Snapshot>();
    const std::vector<uint64_t>& keys = KeysOf(t);
    snapshot->values.resize(keys.size() * tables_[t].dim());
    // Posted under the lock, so that its place after every push counted in
    // pushes_posted_ holds.
    snapshot->pull = pull_(tables_[t], keys, snapshot->values.data(), clock);
    e.snapshot = snapshot;
    e.mark = pushes_posted_;
    ++pulled_;
    return snapshot;
  }

  // Pulls issued and pulls served from another thread's snapshot.
  uint64_t pulled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pulled_;
  }
  uint64_t shared() const {
    std::lock_guard<std::mutex> lock(mu_);
    return shared_;
  }

 private:
  struct Entry {
    std::shared_ptr<Snapshot> snapshot;
    uint64_t mark = 0;
  };
  const std::vector<uint64_t>& KeysOf(size_t t) const {
    size_t dense_index = 0;
    for (size_t i = 0; i < t; ++i) dense_index += tables_[i].kind() == pb::TableSpec::DENSE;
    return keys_[dense_index];
  }

  const Puller pull_;
  const std::vector<pb::TableSpec> tables_;
  std::vector<std::vector<uint64_t>> keys_;  // per dense table, in order: its block numbers
  mutable std::mutex mu_;
  std::vector<Entry> latest_;
  uint64_t pushes_posted_ = 0;
  uint64_t pulled_ = 0;
  uint64_t shared_ = 0;
};

}  // namespace sparta

#endif  // SPARTA_WORKER_DENSE_CACHE_H_
