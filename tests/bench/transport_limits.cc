#include "tests/bench/transport_limits.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "absl/container/flat_hash_set.h"
#include "common/hash.h"
#include "server/optimizer.h"
#include "server/table_shard.h"

namespace sparta {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Binds `socket` to `endpoint` and returns where peers connect (the port
// picked for tcp://...:*).
std::string Bind(zmq::socket_t& socket, const std::string& endpoint) {
  socket.bind(endpoint);
  return socket.get(zmq::sockopt::last_endpoint);
}

}  // namespace

double RawRoundTrips(const std::string& endpoint, size_t request_bytes, int window, double min_seconds) {
  zmq::context_t server_context(1), client_context(1);
  zmq::socket_t router(server_context, zmq::socket_type::router);
  const std::string address = Bind(router, endpoint);
  // The server answers every request with a small reply, as a server
  // acknowledges a push; an empty request ends it.
  std::thread server([&router] {
    const char reply[16] = {};
    while (true) {
      zmq::message_t id, request;
      if (!router.recv(id) || !router.recv(request)) return;
      router.send(id, zmq::send_flags::sndmore);
      router.send(zmq::const_buffer(reply, sizeof(reply)));
      if (request.size() == 0) return;
    }
  });
  zmq::socket_t dealer(client_context, zmq::socket_type::dealer);
  dealer.connect(address);
  const std::vector<char> payload(request_bytes, 'x');
  zmq::message_t reply;
  auto run = [&](int requests) {
    int sent = 0, answered = 0;
    while (answered < requests) {
      while (sent < requests && sent - answered < window) {
        dealer.send(zmq::const_buffer(payload.data(), payload.size()));
        ++sent;
      }
      if (dealer.recv(reply)) ++answered;
    }
  };
  run(200);  // warm-up: the connection is up and its buffers grown
  int done = 0;
  const auto start = Clock::now();
  do {
    run(500);
    done += 500;
  } while (Since(start) < min_seconds);
  const double seconds = Since(start);
  dealer.send(zmq::message_t(), zmq::send_flags::none);
  (void)dealer.recv(reply);
  server.join();
  return done / seconds;
}

double RawOneWay(const std::string& endpoint, size_t message_bytes, double min_seconds) {
  zmq::context_t receiver_context(1), sender_context(1);
  zmq::socket_t pull(receiver_context, zmq::socket_type::pull);
  // A few messages queued each side: the sender is held to the rate the
  // receiver takes them, and the measurement ends when the sending does.
  pull.set(zmq::sockopt::rcvhwm, 4);
  const std::string address = Bind(pull, endpoint);
  double bytes_per_second = 0;
  std::thread receiver([&] {
    zmq::message_t message;
    uint64_t bytes = 0;
    Clock::time_point first;
    bool started = false;
    while (pull.recv(message) && message.size() > 0) {
      // Timed from the first message's arrival: the rate of what follows.
      if (!started) {
        first = Clock::now();
        started = true;
        continue;
      }
      bytes += message.size();
      bytes_per_second = bytes / Since(first);
    }
  });
  zmq::socket_t push(sender_context, zmq::socket_type::push);
  push.set(zmq::sockopt::sndhwm, 4);
  push.connect(address);
  // Sent from one buffer without copies (ZeroMQ reads it in place): what
  // the transport can carry, not what a copy costs.
  const std::vector<char> payload(message_bytes, 'x');
  const auto start = Clock::now();
  int sent = 0;
  do {
    push.send(zmq::message_t(const_cast<char*>(payload.data()), payload.size(), nullptr), zmq::send_flags::none);
    ++sent;
  } while (Since(start) < min_seconds || sent < 8);
  push.send(zmq::message_t(), zmq::send_flags::none);
  receiver.join();
  return bytes_per_second;
}

// The server's layout: 256 virtual shards, each its own index and arena
// (a server's executor walks a request's keys shard by shard).
constexpr int kShardBits = 8;

struct UpdateRateLimit::Table {
  pb::TableSpec spec;
  std::unique_ptr<Optimizer> optimizer;
  uint32_t dim = 0;
  std::vector<std::unique_ptr<TableShard>> shards;
  std::vector<std::vector<uint64_t>> requests;
  std::vector<float> grads;
};

UpdateRateLimit::UpdateRateLimit(uint64_t rows, uint32_t dim, size_t keys_per_request)
    : table_(std::make_unique<Table>()) {
  Table& t = *table_;
  t.dim = dim;
  t.spec.set_id(0);
  t.spec.set_name("limit.update");
  t.spec.set_dim(dim);
  t.spec.mutable_optimizer()->set_type(pb::OptimizerSpec::ADAGRAD);
  t.spec.mutable_optimizer()->set_learning_rate(0.01f);
  t.spec.mutable_optimizer()->set_initial_accumulator(0.1f);
  auto optimizer = Optimizer::Create(t.spec.optimizer());
  if (!optimizer.ok()) return;
  t.optimizer = *std::move(optimizer);
  for (uint32_t s = 0; s < (1u << kShardBits); ++s) {
    t.shards.push_back(std::make_unique<TableShard>(s, &t.spec, t.optimizer.get(), EvictionPolicy::kLru,
                                                    /*small_chunks=*/false));
  }
  uint64_t created = 0;
  for (uint64_t key = 0; key < rows; ++key) (void)t.shards[ShardOf(key, kShardBits)]->FindOrCreate(key, &created);
  // Requests of distinct random keys, drawn (and grouped by shard, as the
  // server's I/O thread routes them) before the timing.
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint64_t> pick(0, rows - 1);
  t.requests.resize(4);
  for (auto& keys : t.requests) {
    absl::flat_hash_set<uint64_t> seen;
    while (keys.size() < std::min<uint64_t>(keys_per_request, rows)) {
      const uint64_t key = pick(rng);
      if (seen.insert(key).second) keys.push_back(key);
    }
    std::stable_sort(keys.begin(), keys.end(),
                     [](uint64_t a, uint64_t b) { return ShardOf(a, kShardBits) < ShardOf(b, kShardBits); });
  }
  t.grads.assign(keys_per_request * dim, 0.001f);
}

UpdateRateLimit::~UpdateRateLimit() = default;

double UpdateRateLimit::Measure(double min_seconds) {
  Table& t = *table_;
  if (t.optimizer == nullptr) return 0;
  // The executor's loop without the rest of the executor: find every row,
  // then update every row, each pass prefetching a few keys ahead (random
  // keys miss the cache at the index slot and again at the row).
  constexpr size_t kLookAhead = 8;
  std::vector<float*> rows_of(t.requests[0].size());
  const size_t row_bytes = size_t{t.shards[0]->stride()} * sizeof(float);
  uint64_t updated = 0;
  const auto start = Clock::now();
  do {
    for (const auto& keys : t.requests) {
      const size_t n = keys.size();
      for (size_t i = 0; i < n; ++i) {
        if (i + kLookAhead < n) t.shards[ShardOf(keys[i + kLookAhead], kShardBits)]->Prefetch(keys[i + kLookAhead]);
        TableShard& shard = *t.shards[ShardOf(keys[i], kShardBits)];
        rows_of[i] = shard.row(shard.FindSlot(keys[i]));
      }
      for (size_t i = 0; i < n; ++i) {
        if (i + kLookAhead < n) {
          const char* ahead = reinterpret_cast<const char*>(rows_of[i + kLookAhead]);
          for (size_t line = 0; line < row_bytes; line += 64) __builtin_prefetch(ahead + line, 1);
        }
        t.optimizer->Apply(rows_of[i], t.grads.data() + i * t.dim, t.dim);
      }
      updated += n;
    }
  } while (Since(start) < min_seconds);
  return updated / Since(start);
}

}  // namespace sparta
