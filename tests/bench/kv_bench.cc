// sparta-kv-bench: data-plane throughput of a real Sparta cluster on
// loopback. It joins the cluster from --config as worker 0 (the scheduler and
// the servers are started separately, by scripts/bench.sh), then measures
//   - sparse push, pull and push+pull (keys/s, MB/s) for dim 8, 16, 64 and
//     requests of 1k..1M unique random keys, with the servers applying Adagrad;
//   - dense push and pull of 1 KB..16 MB (GB/s);
//   - this machine's memcpy bandwidth, measured in the same run, so that bulk
//     figures can be read as a fraction of the physical limit;
//   - the limits of the data plane (records limit_*, transport_limits.h):
//     plain libzmq round trips of 4 KB requests (1 and 8 in flight) and
//     one-way throughput of 1 MB and 16 MB messages, over tcp:// loopback and
//     ipc://, and the update rate of Adagrad in this process on a table as
//     large as the benchmark's and on a 16 MB dense table (one thread, as
//     one executor); each Sparta figure is also reported as a fraction of
//     its limit (records *_vs_limit):
//       small_4KB_push_windowN  / limit_zmq_<transport>_4KB_windowN
//       dense_16MB_{push,pull}  / limit_zmq_<transport>_oneway_16MB
//       dense_16MB_push (record dense_16MB_push_vs_lower_limit)
//                               / the lower of that and limit_update_dense_16MB
//       sparse_dim8_keys100000_{push,pull}
//                               / the lower of limit_zmq_<transport>_oneway_1MB
//                                 (in keys: bytes per key on the wire) and
//                                 limit_update_dim8_keys100000
//     where <transport> is the one the cluster's peers use
//     (cluster.local_transport).
// With server.memory_limit set (the same --set as the server's), it measures
// instead the worst case of the cold tier: sparse push and pull of uniform
// random keys over a table 10x the server's hot-row budget, so that nine
// keys in ten are cold, and, as their limit, the rate of plain RocksDB
// MultiGet over as many rows of the same size in this process (records
// tiered_* and limit_rocksdb_multiget).
// Results go to stdout as a table and, with --json, one record per figure.
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include <zmq.hpp>

#include "absl/container/flat_hash_set.h"
#include "common/daemon_options.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/logging.h"
#include "common/scheduler_client.h"
#include "server/memory_budget.h"
#include "server/optimizer.h"
#include "server/row_store.h"
#include "server/table_shard.h"
#include "tests/bench/transport_limits.h"
#include "worker/kv_client.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

namespace sparta {
namespace {

using Clock = std::chrono::steady_clock;

struct Record {
  std::string name, unit;
  double value;
};

// CPU time of the calling thread so far, in seconds.
double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// Runs `op` until at least `min_seconds` have passed (and at least 3 times);
// returns seconds per run, and in `*cpu_per_run` (if given) the calling
// thread's CPU seconds per run.
double TimePerRun(const std::function<void()>& op, double min_seconds, double* cpu_per_run = nullptr) {
  op();  // warm-up: first touch creates rows, connections settle
  int runs = 0;
  const double cpu_start = ThreadCpuSeconds();
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    op();
    ++runs;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds || runs < 3);
  if (cpu_per_run != nullptr) *cpu_per_run = (ThreadCpuSeconds() - cpu_start) / runs;
  return elapsed / runs;
}

double MemcpyGBps() {
  const size_t bytes = 64 << 20;
  std::vector<char> a(bytes, 1), b(bytes);
  const double t = TimePerRun([&] { std::memcpy(b.data(), a.data(), bytes); }, 0.3);
  return bytes / t / 1e9;
}

std::vector<uint64_t> UniqueKeys(size_t n, uint64_t key_space, std::mt19937_64& rng) {
  std::vector<uint64_t> keys;
  keys.reserve(n);
  if (n >= key_space) {
    for (uint64_t k = 0; k < key_space; ++k) keys.push_back(k);
    std::shuffle(keys.begin(), keys.end(), rng);
    return keys;
  }
  absl::flat_hash_set<uint64_t> seen;
  std::uniform_int_distribution<uint64_t> pick(0, key_space - 1);
  while (keys.size() < n) {
    uint64_t k = pick(rng);
    if (seen.insert(k).second) keys.push_back(k);
  }
  return keys;
}

// Keys per second of plain RocksDB MultiGet (in chunks of 128, as the
// server reads) for `lookups` uniform random keys of `rows` rows of
// `value_bytes` each, stored under the server's key layout (4-byte shard,
// 8-byte key, big-endian) with 4 KiB blocks and Bloom filters, compacted
// first: the read rate the cold tier could reach if it did nothing else.
double RawMultiGetKeysPerSecond(const std::string& dir, uint64_t rows, size_t value_bytes, size_t lookups,
                                std::mt19937_64& rng) {
  std::filesystem::remove_all(dir);
  rocksdb::Options options;
  options.create_if_missing = true;
  options.compression = rocksdb::kNoCompression;
  options.write_buffer_size = 64 << 20;
  rocksdb::BlockBasedTableOptions table;
  table.block_size = 4 << 10;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(options, dir, &raw).ok()) return 0;
  std::unique_ptr<rocksdb::DB> db(raw);
  // The server's own key layout (RowKey); shards as 256 virtual shards split keys.
  auto key_of = [](uint64_t key) { return RowKey(ShardOf(key, 8), key); };
  const std::string value(value_bytes, '\x01');
  rocksdb::WriteOptions write;
  write.disableWAL = true;
  rocksdb::WriteBatch batch;
  for (uint64_t k = 0; k < rows; ++k) {
    batch.Put(key_of(k), value);
    if (batch.Count() == 100000 || k + 1 == rows) {
      if (!db->Write(write, &batch).ok()) return 0;
      batch.Clear();
    }
  }
  if (!db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr).ok()) return 0;
  std::uniform_int_distribution<uint64_t> pick(0, rows - 1);
  std::vector<char> key_bytes(lookups * 12);
  std::vector<rocksdb::Slice> slices(lookups);
  for (size_t i = 0; i < lookups; ++i) {
    const std::string key = key_of(pick(rng));
    std::memcpy(key_bytes.data() + i * 12, key.data(), 12);
    slices[i] = rocksdb::Slice(key_bytes.data() + i * 12, 12);
  }
  constexpr size_t kChunk = 128;
  std::vector<rocksdb::PinnableSlice> values(kChunk);
  std::vector<rocksdb::Status> statuses(kChunk);
  size_t found = 0;
  const double t = TimePerRun([&] {
    for (size_t begin = 0; begin < lookups; begin += kChunk) {
      const size_t count = std::min(kChunk, lookups - begin);
      db->MultiGet(rocksdb::ReadOptions(), db->DefaultColumnFamily(), count, slices.data() + begin, values.data(),
                   statuses.data());
      for (size_t c = 0; c < count; ++c) {
        found += statuses[c].ok();
        values[c].Reset();
      }
    }
  }, 0.5);
  db.reset();
  std::filesystem::remove_all(dir);
  return found == 0 ? 0 : lookups / t;
}

// The cold tier's worst case (see the top of this file). Returns false if
// the cluster failed.
bool RunTiered(const Config& config, KVClient& client, bool quick, const pb::OptimizerSpec& optimizer_spec,
               std::mt19937_64& rng, const std::function<void(const std::string&, const std::string&, double)>& add) {
  constexpr uint32_t kDim = 8;
  pb::TableSpec spec;
  spec.set_id(20);  // clear of the ids the other families number from 0
  spec.set_name("bench.tiered" + std::to_string(kDim));
  spec.set_dim(kDim);
  *spec.mutable_optimizer() = optimizer_spec;
  auto optimizer = Optimizer::Create(optimizer_spec);
  auto budget = HotRowBudget(config);
  if (!optimizer.ok() || !budget.ok()) {
    std::cerr << "kv-bench: " << (budget.ok() ? optimizer.status() : budget.status()).message() << "\n";
    return false;
  }
  // A hot row's cost as the server counts it; the table holds 10x the rows
  // that fit the budget.
  const TableShard probe(0, &spec, optimizer->get(), EvictionPolicy::kLru, /*small_chunks=*/true);
  const uint64_t key_space = 10 * *budget / probe.row_cost();
  if (auto st = client.CreateTable(spec); !st.ok()) {
    std::cerr << "kv-bench: " << st.message() << "\n";
    return false;
  }
  std::vector<uint64_t> keys;
  std::vector<float> values;
  for (uint64_t start = 0; start < key_space; start += 100000) {
    keys.clear();
    for (uint64_t k = start; k < std::min(key_space, start + 100000); ++k) keys.push_back(k);
    values.assign(keys.size() * kDim, 0.001f);  // a change: every row is stored when it goes cold
    if (auto st = client.Wait(client.Push(spec.id(), kDim, keys, values)); !st.ok()) {
      std::cerr << "kv-bench: filling the table: " << st.message() << "\n";
      return false;
    }
  }
  std::printf("# table %s: %llu rows, 10x the %.0f MiB hot-row budget of server.memory_limit %.0f MiB\n",
              spec.name().c_str(), static_cast<unsigned long long>(key_space), *budget / 1048576.0,
              config.server.memory_limit_bytes / 1048576.0);
  const size_t n = quick ? 10000 : 100000;
  const double min_seconds = quick ? 0.5 : 2.0;
  const std::string prefix = "tiered_sparse_dim8_keys" + std::to_string(n);
  // Fresh uniform keys for every request (drawn outside the timing):
  // reused keys would be hot from their second request on.
  values.assign(n * kDim, 0.001f);
  std::vector<float> out(values.size());
  auto seconds_per_request = [&](bool push) {
    double timed = 0;
    int requests = 0;
    while (timed < min_seconds || requests < 3) {
      const std::vector<uint64_t> request = UniqueKeys(n, key_space, rng);
      const auto start = Clock::now();
      (void)client.Wait(push ? client.Push(spec.id(), kDim, request, values)
                             : client.Pull(spec.id(), kDim, request, out.data()));
      timed += std::chrono::duration<double>(Clock::now() - start).count();
      ++requests;
    }
    return timed / requests;
  };
  const double t_push = seconds_per_request(true);
  const double t_pull = seconds_per_request(false);
  // Pulls with a window of 4 in flight, as a trainer prefetches its next
  // batches: the server reads one request's cold rows while it serves
  // another.
  constexpr int kWindow = 4;
  double t_window = 0;
  int windowed = 0;
  std::vector<std::vector<float>> outs(kWindow, std::vector<float>(n * kDim));
  while (t_window < min_seconds || windowed < 3 * kWindow) {
    std::vector<std::vector<uint64_t>> requests;
    for (int i = 0; i < 2 * kWindow; ++i) requests.push_back(UniqueKeys(n, key_space, rng));
    const auto start = Clock::now();
    std::deque<KVClient::Ticket> inflight;
    for (int i = 0; i < 2 * kWindow; ++i) {
      inflight.push_back(client.Pull(spec.id(), kDim, requests[i], outs[i % kWindow].data()));
      if (static_cast<int>(inflight.size()) >= kWindow) {
        (void)client.Wait(inflight.front());
        inflight.pop_front();
      }
    }
    for (auto& ticket : inflight) (void)client.Wait(ticket);
    t_window += std::chrono::duration<double>(Clock::now() - start).count();
    windowed += 2 * kWindow;
  }
  t_window /= windowed;
  const double multiget = RawMultiGetKeysPerSecond(
      config.storage.path.empty() ? "/tmp/sparta-kv-bench-rocksdb" : config.storage.path + "/kv-bench-raw",
      key_space, probe.record_floats() * sizeof(float), n, rng);
  add("limit_rocksdb_multiget", "Mkeys/s", multiget / 1e6);
  add(prefix + "_push", "Mkeys/s", n / t_push / 1e6);
  add(prefix + "_pull", "Mkeys/s", n / t_pull / 1e6);
  if (multiget > 0) {
    add(prefix + "_push_vs_multiget", "fraction", n / t_push / multiget);
    add(prefix + "_pull_vs_multiget", "fraction", n / t_pull / multiget);
    add(prefix + "_pull_window4_vs_multiget", "fraction", n / t_window / multiget);
  }
  add(prefix + "_pull_window4", "Mkeys/s", n / t_window / 1e6);
  return true;
}

// How to measure the limits each Sparta figure is read against, over the
// transport the cluster's peers use (per second: requests, bytes, keys).
struct Limits {
  std::string endpoint;  // of the transport the peers use
  double seconds = 0;    // per measurement
  std::unique_ptr<UpdateRateLimit> update_table;
  // A 16 MB dense table as the server holds it: 256 blocks of 16K floats.
  std::unique_ptr<UpdateRateLimit> dense_table;

  double RoundTrips(int window) const { return RawRoundTrips(endpoint, 4096, window, seconds); }
  double OneWay(size_t bytes) const { return RawOneWay(endpoint, bytes, seconds); }
  double Updates() const { return update_table->Measure(seconds); }
  // Bytes of gradient per second that one thread applies to the dense table.
  double DenseUpdates() const { return dense_table->Measure(seconds) * kDenseBlockFloats * sizeof(float); }
  static constexpr uint32_t kDenseBlockFloats = 16384;
};

using AddRecord = std::function<void(const std::string&, const std::string&, double)>;

std::string IpcEndpoint() { return "ipc:///tmp/sparta-kv-bench-" + std::to_string(getpid()) + ".ipc"; }

Limits MeasureLimits(const Config& config, uint64_t key_space, bool quick, const AddRecord& add) {
  Limits limits;
  limits.seconds = quick ? 0.2 : 0.5;
  // This benchmark's peers share a host: they talk over the transport
  // cluster.local_transport names, whose limits the figures are read against.
  const std::string used = config.cluster.local_transport_mode == LocalTransport::kIpc ? "ipc" : "tcp";
  std::printf("# peers talk over %s\n", used.c_str());
  for (const auto& [transport, endpoint] : {std::pair<std::string, std::string>{"tcp", "tcp://127.0.0.1:*"},
                                            std::pair<std::string, std::string>{"ipc", IpcEndpoint()}}) {
    const std::string prefix = "limit_zmq_" + transport + "_";
    const double rt1 = RawRoundTrips(endpoint, 4096, 1, limits.seconds);
    const double rt8 = RawRoundTrips(endpoint, 4096, 8, limits.seconds);
    const double mb1 = RawOneWay(endpoint, 1 << 20, limits.seconds);
    const double mb16 = RawOneWay(endpoint, 16 << 20, limits.seconds);
    add(prefix + "4KB_window1", "requests/s", rt1);
    add(prefix + "4KB_window8", "requests/s", rt8);
    add(prefix + "oneway_1MB", "GB/s", mb1 / 1e9);
    add(prefix + "oneway_16MB", "GB/s", mb16 / 1e9);
    if (transport == used) limits.endpoint = endpoint;
  }
  limits.update_table = std::make_unique<UpdateRateLimit>(key_space, 8, 100000);
  add("limit_update_dim8_keys100000", "Mkeys/s", limits.Updates() / 1e6);
  limits.dense_table = std::make_unique<UpdateRateLimit>(256, Limits::kDenseBlockFloats, 256);
  add("limit_update_dense_16MB", "GB/s", limits.DenseUpdates() / 1e9);
  return limits;
}

// A Sparta figure as a fraction of its limit. This VM's limits alone move
// by 2-5x within minutes (README, Data plane), so one limit measured at the start and a
// figure measured a minute later compare two different machines. Instead
// the two are measured in turn (limit, figure, limit, figure, limit,
// figure, limit), each figure read against the mean of the limits just
// before and after it; the median of the three fractions is the result.
double BracketedFraction(const std::string& name, const std::function<double()>& figure,
                         const std::function<double()>& limit) {
  std::vector<double> fractions;
  double before = limit();
  for (int round = 0; round < 3; ++round) {
    const double value = figure();
    const double after = limit();
    fractions.push_back(value / ((before + after) / 2));
    before = after;
  }
  std::printf("# %s: fractions %.2f %.2f %.2f of the limit measured around each\n", name.c_str(), fractions[0],
              fractions[1], fractions[2]);
  std::sort(fractions.begin(), fractions.end());
  return fractions[1];
}

int Run(const Config& config, const std::string& json_out, bool quick, std::string only) {
  zmq::context_t context(1);
  pb::NodeInfo self;
  self.set_role(pb::WORKER);
  self.set_rank(0);
  self.set_host(config.cluster.host);
  self.set_pid(getpid());
  // With storage.path the job ends with a checkpoint, which first pauses
  // the workers: this one holds nothing once it has reported done, so it
  // answers a pause then (at once if it comes later).
  std::mutex pause_mu;
  bool done = false;
  std::optional<uint64_t> pause_version;
  SchedulerClient* scheduler_ptr = nullptr;
  auto send_paused = [&](uint64_t version) {
    pb::Header paused;
    paused.set_type(pb::PAUSED);
    paused.mutable_checkpoint()->set_version(version);
    scheduler_ptr->Send(std::move(paused));
  };
  SchedulerClient scheduler(&context, config, self,
                            {.on_control = [&](const pb::Header& h) {
                              if (h.type() != pb::PAUSE) return;
                              std::lock_guard<std::mutex> lock(pause_mu);
                              if (done) {
                                send_paused(h.checkpoint().version());
                              } else {
                                pause_version = h.checkpoint().version();
                              }
                            }});
  scheduler_ptr = &scheduler;
  if (auto st = scheduler.Register(); !st.ok()) {
    std::cerr << "kv-bench: " << st.message() << "\n";
    return 1;
  }
  auto view = scheduler.WaitForView();
  if (!view.ok()) {
    std::cerr << "kv-bench: " << view.status().message() << "\n";
    return 1;
  }
  KVClient client(&context, config, scheduler.self().id(), *view);
  if (auto st = client.Start(); !st.ok()) return 1;

  std::vector<Record> records;
  const std::string suffix = config.wire.value_type == WireDtype::kFp16 ? "_fp16" : "";
  auto add = [&](const std::string& base, const std::string& unit, double value) {
    const std::string name = base + suffix;
    records.push_back({name, unit, value});
    std::printf("%-40s %14.2f %s\n", name.c_str(), value, unit.c_str());
    std::fflush(stdout);
  };
  const double min_seconds = quick ? 0.1 : 0.5;
  if (only.empty()) add("memcpy_bandwidth", "GB/s", MemcpyGBps());

  pb::OptimizerSpec adagrad;
  adagrad.set_type(pb::OptimizerSpec::ADAGRAD);
  adagrad.set_learning_rate(0.01f);
  adagrad.set_initial_accumulator(0.1f);
  std::mt19937_64 rng(1);
  // The setting: requests drawn from a table of 10M rows, so that
  // lookups miss the caches as they would in a real model.
  const uint64_t key_space = quick ? 200000 : 10000000;
  const Limits limits = config.server.memory_limit_bytes > 0 ? Limits() : MeasureLimits(config, key_space, quick, add);
  // Records NAME_vs_limit: `figure` (a rate) against `limit` (one in the
  // same unit), measured in turn (BracketedFraction).
  auto vs_limit = [&](const std::string& name, const std::function<double()>& figure,
                      const std::function<double()>& limit) {
    if (limits.endpoint.empty()) return;
    add(name + "_vs_limit", "fraction", BracketedFraction(name, figure, limit));
  };
  if (config.server.memory_limit_bytes > 0) {
    if (!RunTiered(config, client, quick, adagrad, rng, add)) return 1;
    only = "none";  // the tiered run measures only its own family
  }
  uint32_t table_id = 0;
  for (uint32_t dim : {8u, 16u, 64u}) {
    pb::TableSpec spec;
    spec.set_id(table_id++);
    spec.set_name("bench.sparse" + std::to_string(dim));
    spec.set_dim(dim);
    *spec.mutable_optimizer() = adagrad;
    if (auto st = client.CreateTable(spec); !st.ok()) {
      std::cerr << "kv-bench: " << st.message() << "\n";
      return 1;
    }
    const std::string table_prefix = "sparse_dim" + std::to_string(dim);
    if (table_prefix.rfind(only, 0) != 0 && only.rfind(table_prefix + "_", 0) != 0) continue;
    // Fill the table: every key of the key space gets its row first.
    {
      std::vector<uint64_t> keys;
      std::vector<float> values;
      for (uint64_t start = 0; start < key_space; start += 1000000) {
        keys.clear();
        for (uint64_t k = start; k < std::min(key_space, start + 1000000); ++k) keys.push_back(k);
        values.assign(keys.size() * dim, 0.0f);
        if (auto st = client.Wait(client.Push(spec.id(), dim, keys, values)); !st.ok()) {
          std::cerr << "kv-bench: filling the table: " << st.message() << "\n";
          return 1;
        }
      }
      std::printf("# table bench.sparse%u filled with %llu rows\n", dim, static_cast<unsigned long long>(key_space));
    }
    for (size_t n : {size_t{1000}, size_t{10000}, size_t{100000}, size_t{1000000}}) {
      if (quick && n > 100000) continue;
      const auto keys = UniqueKeys(n, key_space, rng);
      std::vector<float> values(keys.size() * dim, 0.001f);
      std::vector<float> out(values.size());
      // Bytes on the wire: keys plus values in the configured encoding.
      const double value_bytes = config.wire.value_type == WireDtype::kFp16 ? 2.0 : 4.0;
      const double mb = keys.size() * (8.0 + value_bytes * dim) / 1e6;
      auto push = [&] { (void)client.Wait(client.Push(spec.id(), dim, keys, values)); };
      auto pull = [&] { (void)client.Wait(client.Pull(spec.id(), dim, keys, out.data())); };
      const std::string prefix = "sparse_dim" + std::to_string(dim) + "_keys" + std::to_string(keys.size());
      if (prefix.rfind(only, 0) != 0) continue;
      // The calling thread's CPU a key (`_client_cpu`): what a worker's
      // compute thread pays to send a request and take in its answer, apart
      // from the server and from this machine's scheduling.
      double cpu_push = 0, cpu_pull = 0;
      const double t_push = TimePerRun(push, min_seconds, &cpu_push);
      add(prefix + "_push", "Mkeys/s", keys.size() / t_push / 1e6);
      add(prefix + "_push_mb", "MB/s", mb / t_push);
      add(prefix + "_push_client_cpu", "ns/key", cpu_push / keys.size() * 1e9);
      const double t_pull = TimePerRun(pull, min_seconds, &cpu_pull);
      add(prefix + "_pull", "Mkeys/s", keys.size() / t_pull / 1e6);
      add(prefix + "_pull_mb", "MB/s", mb / t_pull);
      add(prefix + "_pull_client_cpu", "ns/key", cpu_pull / keys.size() * 1e9);
      if (dim == 8 && n == 100000) {
        // The lower of what the wire carries and what the updates cost.
        auto sparse_limit = [&] {
          return std::min(limits.OneWay(1 << 20) / (8.0 + value_bytes * dim), limits.Updates());
        };
        vs_limit(prefix + "_push", [&] { return keys.size() / TimePerRun(push, min_seconds); }, sparse_limit);
        vs_limit(prefix + "_pull", [&] { return keys.size() / TimePerRun(pull, min_seconds); }, sparse_limit);
      }
      const double t_both = TimePerRun([&] {
        auto a = client.Push(spec.id(), dim, keys, values);
        auto b = client.Pull(spec.id(), dim, keys, out.data());
        (void)client.Wait(a);
        (void)client.Wait(b);
      }, min_seconds);
      add(prefix + "_pushpull", "Mkeys/s", keys.size() / t_both / 1e6);
      if (n == 100000) {
        // A window of 4 requests in flight, as the trainer keeps pushes in
        // flight: the client encodes one while the server applies another.
        constexpr int kWindow = 4;
        const double t_window = TimePerRun([&] {
          std::deque<KVClient::Ticket> inflight;
          for (int i = 0; i < 2 * kWindow; ++i) {
            inflight.push_back(client.Push(spec.id(), dim, keys, values));
            if (static_cast<int>(inflight.size()) >= kWindow) {
              (void)client.Wait(inflight.front());
              inflight.pop_front();
            }
          }
          for (auto& ticket : inflight) (void)client.Wait(ticket);
        }, min_seconds);
        add(prefix + "_push_window4", "Mkeys/s", 2 * kWindow * keys.size() / t_window / 1e6);
      }
    }
  }

  // Dense tables: the worker splits them into 16K-float blocks spread over
  // shards, as the trainer does.
  for (uint64_t bytes : {uint64_t{1} << 10, uint64_t{64} << 10, uint64_t{1} << 20, uint64_t{16} << 20}) {
    const uint64_t floats = bytes / 4;
    const uint32_t block = static_cast<uint32_t>(std::min<uint64_t>(floats, Limits::kDenseBlockFloats));
    pb::TableSpec spec;
    spec.set_id(table_id++);
    spec.set_name("bench.dense" + std::to_string(bytes));
    spec.set_kind(pb::TableSpec::DENSE);
    spec.set_dim(block);
    spec.set_dense_size(floats);
    *spec.mutable_optimizer() = adagrad;
    if (!client.CreateTable(spec).ok()) return 1;
    std::vector<uint64_t> blocks((floats + block - 1) / block);
    for (size_t b = 0; b < blocks.size(); ++b) blocks[b] = b;
    std::vector<float> values(blocks.size() * block, 0.001f), out(values.size());
    const std::string size = bytes >= (1 << 20) ? std::to_string(bytes >> 20) + "MB" : std::to_string(bytes >> 10) + "KB";
    if (("dense_" + size).rfind(only, 0) != 0) continue;
    auto push = [&] { (void)client.Wait(client.Push(spec.id(), block, blocks, values)); };
    auto pull = [&] { (void)client.Wait(client.Pull(spec.id(), block, blocks, out.data())); };
    add("dense_" + size + "_push", "GB/s", bytes / TimePerRun(push, min_seconds) / 1e9);
    add("dense_" + size + "_pull", "GB/s", bytes / TimePerRun(pull, min_seconds) / 1e9);
    if (bytes == uint64_t{16} << 20) {
      auto oneway = [&] { return limits.OneWay(bytes); };
      vs_limit("dense_16MB_push", [&] { return bytes / TimePerRun(push, min_seconds); }, oneway);
      // What one executor can apply caps a push below the wire's one-way
      // rate: Adagrad reads the gradient, the weights and the accumulators
      // and writes both back, 5x the bytes that cross. This is the push
      // read as the sparse ones are, against the lower of the two limits.
      if (!limits.endpoint.empty()) {
        auto lower = [&] { return std::min(oneway(), limits.DenseUpdates()); };
        add("dense_16MB_push_vs_lower_limit", "fraction",
            BracketedFraction("dense_16MB_push against the lower limit",
                              [&] { return bytes / TimePerRun(push, min_seconds); }, lower));
      }
      vs_limit("dense_16MB_pull", [&] { return bytes / TimePerRun(pull, min_seconds); }, oneway);
    }
  }

  // Small requests: 4 KB dense pushes, one at a time and with a window of 8
  // in flight (the rate a latency-bound client can reach).
  if (std::string("small_").rfind(only, 0) == 0 || only.rfind("small_", 0) == 0) {
    pb::TableSpec spec;
    spec.set_id(table_id++);
    spec.set_name("bench.small");
    spec.set_kind(pb::TableSpec::DENSE);
    spec.set_dim(1024);
    spec.set_dense_size(1024);
    *spec.mutable_optimizer() = adagrad;
    if (!client.CreateTable(spec).ok()) return 1;
    const std::vector<uint64_t> block = {0};
    const std::vector<float> values(1024, 0.001f);
    for (int window : {1, 8}) {
      const int batch = 200;
      auto requests = [&] {
        std::deque<KVClient::Ticket> inflight;
        for (int i = 0; i < batch; ++i) {
          inflight.push_back(client.Push(spec.id(), 1024, block, values));
          if (static_cast<int>(inflight.size()) >= window) {
            (void)client.Wait(inflight.front());
            inflight.pop_front();
          }
        }
        for (auto& ticket : inflight) (void)client.Wait(ticket);
      };
      const std::string name = "small_4KB_push_window" + std::to_string(window);
      double cpu = 0;
      add(name, "requests/s", batch / TimePerRun(requests, min_seconds, &cpu));
      add(name + "_client_cpu", "us/request", cpu / batch * 1e6);
      vs_limit(name, [&] { return batch / TimePerRun(requests, min_seconds); },
               [&] { return limits.RoundTrips(window); });
    }
  }

  std::filesystem::remove(IpcEndpoint().substr(std::string("ipc://").size()));
  scheduler.SendWorkerDone(pb::WorkerReport());
  {
    std::lock_guard<std::mutex> lock(pause_mu);
    done = true;
    if (pause_version) send_paused(*pause_version);
  }
  (void)scheduler.WaitForEnd();
  if (!json_out.empty()) {
    std::ofstream out(json_out);
    out << "[\n";
    for (size_t i = 0; i < records.size(); ++i) {
      out << "  {\"name\": " << JsonQuote(records[i].name) << ", \"unit\": " << JsonQuote(records[i].unit)
          << ", \"value\": " << JsonNumber(records[i].value) << "}" << (i + 1 < records.size() ? ",\n" : "\n");
    }
    out << "]\n";
  }
  return 0;
}

}  // namespace
}  // namespace sparta

int main(int argc, char** argv) {
  sparta::DaemonOptions options;
  std::string json_out;
  bool quick = false;
  std::string only;
  auto exit_code = sparta::ParseDaemonOptions(argc, argv, sparta::pb::WORKER, &options, [&](CLI::App& app) {
    // It joins the job as a worker, but is not the worker daemon.
    app.description("sparta-kv-bench: data-plane throughput of a running cluster, against the transport's and the "
                    "update's own limits");
    app.add_option("--json", json_out, "write the results here as JSON records");
    app.add_flag("--quick", quick, "smaller sizes and shorter runs (a smoke test)");
    app.add_option("--only", only, "run only the measurements whose name starts with this");
  });
  if (exit_code) return *exit_code;
  spdlog::set_level(spdlog::level::warn);
  return sparta::Run(options.config, json_out, quick, only);
}
