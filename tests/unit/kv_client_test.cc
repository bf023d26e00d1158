// KVClient's resends over real ZeroMQ sockets (the test plays both servers'
// ROUTERs): a push resent under a changed shard map is split again, keeping
// its seq (servers recognize what they applied by it), and two of its pieces
// may be due at one server at once; the second waits for the first's reply,
// since a reply names only the seq.
#include "worker/kv_client.h"

#include <optional>

#include <catch2/catch.hpp>

#include "common/message.h"
#include "common/socket_util.h"
#include "received_within.h"

namespace sparta {
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

TEST_CASE("two pieces of one resent push due at one server go one after the other") {
  zmq::context_t context(1);
  FakeServer s0(context), s1(context);
  Config config;
  config.cluster.servers = 2;
  config.cluster.local_transport_mode = LocalTransport::kTcp;
  KVClient client(&context, config, /*node_id=*/7, View(5, {0, 0, 0, 0}, s0, s1));
  REQUIRE(client.Start().ok());
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

}  // namespace
}  // namespace sparta
