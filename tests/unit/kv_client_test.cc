// KVClient's resends over real ZeroMQ sockets (the test plays both servers'
// ROUTERs): a push resent under a changed shard map is split again, keeping
// its seq (servers recognize what they applied by it), and two of its pieces
// may be due at one server at once; the second waits for the first's reply,
// since a reply names only the seq. A request larger than a part goes to
// its server as several messages, each under its own seq.
#include "worker/kv_client.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "common/message.h"
#include "common/shard_view.h"
#include "common/socket_util.h"
#include "received_within.h"

namespace sparta::kv_client_test {
namespace {

constexpr uint32_t kTable = 1;

struct FakeServer {
  explicit FakeServer(zmq::context_t& context) : socket(context, zmq::socket_type::router) {
    ConfigureSocket(socket);
    auto bound = BindTcp(socket, "127.0.0.1", 0);
    REQUIRE(bound.ok());
    port = *bound;
  }
  // The next message this server gets, if one comes within `ms`.
  std::optional<Message> Received(int ms) { return ReceivedWithin(socket, ms); }
  void Answer(const Message& request, absl::StatusCode code, uint64_t epoch) {
    pb::Header h;
    h.set_type(pb::RESPONSE);
    h.set_seq(request.header.seq());
    h.set_table(request.header.table());
    h.set_epoch(epoch);
    h.set_status(static_cast<int32_t>(code));
    REQUIRE(SendMessage(socket, h, nullptr, &*request.routing_id).ok());
  }
  zmq::socket_t socket;
  int port = 0;
};

// Two servers and 4 shards; shard s is led by owners[s].
pb::ClusterView View(uint64_t epoch, std::vector<uint32_t> owners, const FakeServer& s0, const FakeServer& s1) {
  pb::ClusterView view;
  view.set_epoch(epoch);
  for (int rank = 0; rank < 2; ++rank) {
    pb::NodeInfo* node = view.add_nodes();
    node->set_role(pb::SERVER);
    node->set_rank(rank);
    node->set_id(rank + 1);
    node->set_host("127.0.0.1");
    node->set_data_port(rank == 0 ? s0.port : s1.port);
  }
  for (uint32_t owner : owners) view.add_shard_owner(owner);
  return view;
}

// The order in which a request's keys reach their servers: by shard, each
// shard's keys in the caller's order (KVClient::Send).
std::vector<size_t> InShardOrder(const ShardView& shards, const std::vector<uint64_t>& keys) {
  std::vector<size_t> order(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return shards.shard_of(keys[a]) < shards.shard_of(keys[b]); });
  return order;
}

// A started client of two fake servers, both over TCP; every shard on s0
// (view epoch 5).
struct TwoServers {
  static Config Settings() {
    Config config;
    config.cluster.servers = 2;
    config.cluster.local_transport_mode = LocalTransport::kTcp;
    return config;
  }
  TwoServers() { REQUIRE(client.Start().ok()); }
  zmq::context_t context{1};
  FakeServer s0{context}, s1{context};
  KVClient client{&context, Settings(), /*node_id=*/7, View(5, {0, 0, 0, 0}, s0, s1)};
};

TEST_CASE("two pieces of one resent push due at one server go one after the other") {
  TwoServers cluster;
  FakeServer& s0 = cluster.s0;
  FakeServer& s1 = cluster.s1;
  KVClient& client = cluster.client;
  // Keys in shards 0 and 2.
  const ShardView map(View(5, {0, 0, 0, 0}, s0, s1));
  std::vector<uint64_t> keys;
  for (uint64_t k = 1; keys.size() < 2; ++k) {
    if (map.shard_of(k) == (keys.empty() ? 0u : 2u)) keys.push_back(k);
  }
  const std::vector<float> grads = {1, 2};
  KVClient::Ticket push = client.Push(kTable, 1, keys, grads);
  std::optional<Message> first = s0.Received(5000);
  REQUIRE(first.has_value());
  const uint64_t seq = first->header.seq();
  // Refused (s0 hands its shards off); under view 6 shard 0 is s1's, shard 2 still s0's.
  client.UpdateView(View(6, {1, 0, 0, 0}, s0, s1));
  s0.Answer(*first, absl::StatusCode::kAborted, 6);
  std::optional<Message> to_s1 = s1.Received(5000);
  std::optional<Message> to_s0 = s0.Received(5000);
  REQUIRE(to_s1.has_value());
  REQUIRE(to_s0.has_value());
  CHECK(to_s1->header.seq() == seq);
  CHECK(to_s0->header.seq() == seq);
  // s1 refuses its piece too, and under view 7 shard 0 is back on s0, where
  // the other piece is still unanswered: the first piece waits for it.
  client.UpdateView(View(7, {0, 0, 0, 0}, s0, s1));
  s1.Answer(*to_s1, absl::StatusCode::kAborted, 7);
  CHECK_FALSE(s0.Received(300).has_value());
  CHECK_FALSE(KVClient::Done(push));
  s0.Answer(*to_s0, absl::StatusCode::kOk, 7);
  std::optional<Message> last = s0.Received(5000);
  REQUIRE(last.has_value());
  CHECK(last->header.seq() == seq);
  CHECK(last->header.num_keys() == 1);
  s0.Answer(*last, absl::StatusCode::kOk, 7);
  CHECK(client.Wait(push).ok());
}

// A pull or push with more than a part's worth of values (about 1 MiB) goes
// to its server as several messages, back to back, its keys in shard order,
// each under its own seq (so the server can apply one while the next
// crosses); a pull's reply to each part lands at that part's positions.
TEST_CASE("a request larger than a part goes as several messages, each answered on its own") {
  TwoServers cluster;
  FakeServer& s0 = cluster.s0;
  FakeServer& s1 = cluster.s1;
  KVClient& client = cluster.client;
  // 2,500 rows of 1 KiB (dim 256), all on s0: parts of 1,024, 1,024 and 452.
  constexpr uint32_t kDim = 256;
  std::vector<uint64_t> keys(2500);
  std::vector<float> grads(keys.size() * kDim);
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = 1000 + 7 * i;
    for (uint32_t j = 0; j < kDim; ++j) grads[i * kDim + j] = static_cast<float>(i) + j / 1024.0f;
  }
  const std::vector<size_t> order = InShardOrder(ShardView(View(5, {0, 0, 0, 0}, s0, s1)), keys);
  KVClient::Ticket push = client.Push(kTable, kDim, keys, grads);
  std::vector<Message> parts;
  while (auto m = s0.Received(parts.size() < 3 ? 5000 : 200)) parts.push_back(*std::move(m));
  REQUIRE(parts.size() == 3);
  size_t at = 0, wrong = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    const Message& m = parts[p];
    if (p > 0) CHECK(m.header.seq() > parts[p - 1].header.seq());
    CHECK(m.header.num_keys() == (p < 2 ? 1024u : 452u));
    REQUIRE(m.frames.size() == 2);
    REQUIRE(m.frames[0].size() == m.header.num_keys() * sizeof(uint64_t));
    REQUIRE(m.frames[1].size() == m.header.num_keys() * kDim * sizeof(float));
    std::vector<uint64_t> scratch;
    const std::span<const uint64_t> got = FrameView<uint64_t>(m.frames[0], &scratch);
    for (size_t k = 0; k < got.size(); ++k, ++at) {
      const size_t i = order[at];
      wrong += got[k] != keys[i];
      wrong += std::memcmp(static_cast<const float*>(m.frames[1].data()) + k * kDim, grads.data() + i * kDim,
                           kDim * sizeof(float)) != 0;
    }
  }
  CHECK(at == keys.size());
  CHECK(wrong == 0);
  // Acknowledged out of order: the push is done when every part is.
  s0.Answer(parts[1], absl::StatusCode::kOk, 5);
  s0.Answer(parts[2], absl::StatusCode::kOk, 5);
  CHECK_FALSE(s1.Received(100).has_value());
  CHECK_FALSE(KVClient::Done(push));
  s0.Answer(parts[0], absl::StatusCode::kOk, 5);
  CHECK(client.Wait(push).ok());

  // The same keys pulled: each part's reply carries its rows, each row
  // filled with its key, and they land at their keys' positions.
  std::vector<float> out(keys.size() * kDim, -1.0f);
  KVClient::Ticket pull = client.Pull(kTable, kDim, keys, out.data());
  parts.clear();
  while (auto m = s0.Received(parts.size() < 3 ? 5000 : 200)) parts.push_back(*std::move(m));
  REQUIRE(parts.size() == 3);
  for (int p = 2; p >= 0; --p) {
    const Message& m = parts[p];
    REQUIRE(m.frames.size() == 1);
    // A received frame need not be 8-byte aligned: read it as the server does.
    std::vector<uint64_t> scratch;
    const std::span<const uint64_t> asked = FrameView<uint64_t>(m.frames[0], &scratch);
    REQUIRE(asked.size() == m.header.num_keys());
    std::vector<float> rows(size_t{m.header.num_keys()} * kDim);
    for (uint32_t k = 0; k < m.header.num_keys(); ++k) {
      std::fill_n(rows.data() + size_t{k} * kDim, kDim, static_cast<float>(asked[k]));
    }
    pb::Header h;
    h.set_type(pb::RESPONSE);
    h.set_seq(m.header.seq());
    h.set_table(kTable);
    h.set_epoch(5);
    h.set_num_keys(m.header.num_keys());
    h.set_dim(kDim);
    std::vector<zmq::message_t> frames;
    frames.push_back(FrameFromVector(std::move(rows)));
    REQUIRE(SendMessage(s0.socket, h, &frames, &*m.routing_id).ok());
  }
  REQUIRE(client.Wait(pull).ok());
  wrong = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    for (uint32_t j = 0; j < kDim; ++j) wrong += out[i * kDim + j] != static_cast<float>(keys[i]);
  }
  CHECK(wrong == 0);
}

// A key that comes several times in one push reaches the server with its
// gradients in the caller's order (the server applies them in the order
// they arrive), though the request's keys are regrouped by shard.
TEST_CASE("a push's repeated keys keep the caller's order when its keys are grouped by shard") {
  TwoServers cluster;
  constexpr uint32_t kDim = 4;
  // 300 keys, 12 distinct ones over the 4 shards, every occurrence with
  // gradients of its own.
  std::vector<uint64_t> keys(300);
  std::vector<float> grads(keys.size() * kDim);
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = 40 + (i * 7) % 12;
    for (uint32_t j = 0; j < kDim; ++j) grads[i * kDim + j] = static_cast<float>(i * kDim + j);
  }
  const ShardView shards(View(5, {0, 0, 0, 0}, cluster.s0, cluster.s1));
  std::vector<uint32_t> shards_used;
  for (uint64_t key : keys) shards_used.push_back(shards.shard_of(key));
  std::sort(shards_used.begin(), shards_used.end());
  REQUIRE(std::unique(shards_used.begin(), shards_used.end()) - shards_used.begin() >= 2);
  KVClient::Ticket push = cluster.client.Push(kTable, kDim, keys, grads);
  std::optional<Message> m = cluster.s0.Received(5000);
  REQUIRE(m.has_value());
  REQUIRE(m->header.num_keys() == keys.size());
  REQUIRE(m->frames.size() == 2);
  std::vector<uint64_t> scratch;
  const std::span<const uint64_t> got = FrameView<uint64_t>(m->frames[0], &scratch);
  // A received frame need not be 4-byte aligned: read it as the server does.
  std::vector<float> grads_scratch;
  const std::span<const float> got_grads = FrameView<float>(m->frames[1], &grads_scratch);
  REQUIRE(got_grads.size() == got.size() * kDim);
  // Shard by shard, and each key's occurrences one after another in the
  // order the caller gave them (their gradients say which occurrence).
  std::vector<uint64_t> last_occurrence(64, 0);
  size_t out_of_order = 0;
  for (size_t k = 0; k < got.size(); ++k) {
    if (k > 0) out_of_order += shards.shard_of(got[k]) < shards.shard_of(got[k - 1]);
    const size_t i = static_cast<size_t>(got_grads[k * kDim]) / kDim;
    REQUIRE(i < keys.size());
    CHECK(keys[i] == got[k]);
    out_of_order += last_occurrence[got[k] - 40] > i + 1;
    last_occurrence[got[k] - 40] = i + 1;
  }
  CHECK(out_of_order == 0);
  cluster.s0.Answer(*m, absl::StatusCode::kOk, 5);
  CHECK(cluster.client.Wait(push).ok());
}

// Keys of two servers interleaved: each server's parts hold its own keys,
// in shard order, with their gradients; a part goes out as soon as its
// last key is copied in, so the two servers' parts are interleaved too, and
// each server's last, short part is sent as well.
TEST_CASE("a request over two servers goes to each as its own parts, in shard order") {
  zmq::context_t context{1};
  FakeServer s0{context}, s1{context};
  const pb::ClusterView view = View(5, {0, 1, 1, 0}, s0, s1);
  KVClient client{&context, TwoServers::Settings(), /*node_id=*/7, view};
  REQUIRE(client.Start().ok());
  constexpr uint32_t kDim = 256;
  std::vector<uint64_t> keys(3000);
  std::vector<float> grads(keys.size() * kDim);
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = 5000 + 13 * i;
    for (uint32_t j = 0; j < kDim; ++j) grads[i * kDim + j] = static_cast<float>(i) - j / 512.0f;
  }
  const ShardView shards(view);
  std::vector<size_t> expected[2];
  for (size_t i : InShardOrder(shards, keys)) expected[shards.owner_of_key(keys[i])].push_back(i);
  REQUIRE(expected[0].size() > 1024);
  REQUIRE(expected[1].size() > 1024);
  KVClient::Ticket push = client.Push(kTable, kDim, keys, grads);
  FakeServer* servers[2] = {&s0, &s1};
  for (int s = 0; s < 2; ++s) {
    const size_t num_parts = (expected[s].size() + 1023) / 1024;
    std::vector<Message> parts;
    while (auto m = servers[s]->Received(parts.size() < num_parts ? 5000 : 200)) parts.push_back(*std::move(m));
    REQUIRE(parts.size() == num_parts);
    size_t at = 0, wrong = 0;
    for (size_t p = 0; p < parts.size(); ++p) {
      const Message& m = parts[p];
      if (p > 0) CHECK(m.header.seq() > parts[p - 1].header.seq());
      CHECK(m.header.num_keys() == std::min<size_t>(1024, expected[s].size() - at));
      REQUIRE(m.frames.size() == 2);
      std::vector<uint64_t> scratch;
      const std::span<const uint64_t> got = FrameView<uint64_t>(m.frames[0], &scratch);
      REQUIRE(got.size() == m.header.num_keys());
      REQUIRE(m.frames[1].size() == got.size() * kDim * sizeof(float));
      for (size_t k = 0; k < got.size(); ++k, ++at) {
        const size_t i = expected[s][at];
        wrong += got[k] != keys[i];
        wrong += std::memcmp(static_cast<const float*>(m.frames[1].data()) + k * kDim, grads.data() + i * kDim,
                             kDim * sizeof(float)) != 0;
      }
      servers[s]->Answer(m, absl::StatusCode::kOk, 5);
    }
    CHECK(at == expected[s].size());
    CHECK(wrong == 0);
  }
  CHECK(client.Wait(push).ok());
}

}  // namespace
}  // namespace sparta::kv_client_test
