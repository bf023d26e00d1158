// Wire messages over real ZeroMQ sockets: round trips keep the payload
// intact, and every kind of malformed message is consumed and reported
// without disturbing the next one.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include <zmq.hpp>

#include "common/message.h"
#include "common/socket_util.h"

namespace sparta::message_test {
namespace {

struct Pair {
  zmq::context_t context{1};
  zmq::socket_t client{context, zmq::socket_type::dealer};
  zmq::socket_t server{context, zmq::socket_type::router};
  Pair() {
    ConfigureSocket(client);
    ConfigureSocket(server);
    server.bind("inproc://message-test");
    client.connect("inproc://message-test");
  }
  // Blocks until a message is waiting, then decodes it.
  absl::StatusOr<std::optional<Message>> Receive() {
    zmq::pollitem_t item{server.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(-1));
    return ReceiveMessage(server, /*from_router=*/true);
  }
  void SendRaw(std::vector<std::string> frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      zmq::message_t m(frames[i].data(), frames[i].size());
      client.send(m, i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
};

pb::Header PushHeader(uint32_t keys, uint32_t dim) {
  pb::Header h;
  h.set_type(pb::PUSH);
  h.set_sender(7);
  h.set_seq(42);
  h.set_epoch(3);
  h.set_num_keys(keys);
  h.set_dim(dim);
  return h;
}

TEST_CASE("a push round-trips with its payload untouched") {
  Pair p;
  std::vector<uint64_t> keys = {1, 2, 0xffffffffffffffffULL};
  std::vector<float> grads = {1, 2, 3, 4, 5, 6};
  std::vector<zmq::message_t> frames;
  frames.push_back(FrameFromVector(std::vector<uint64_t>(keys)));
  frames.push_back(FrameFromVector(std::vector<float>(grads)));
  REQUIRE(SendMessage(p.client, PushHeader(3, 2), &frames).ok());
  auto got = p.Receive();
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  Message& m = **got;
  CHECK(m.header.sender() == 7);
  CHECK(m.header.seq() == 42);
  CHECK(m.header.epoch() == 3);
  std::vector<uint64_t> ks;
  std::vector<float> gs;
  auto kv = FrameView<uint64_t>(m.frames[0], &ks);
  auto gv = FrameView<float>(m.frames[1], &gs);
  CHECK(std::vector<uint64_t>(kv.begin(), kv.end()) == keys);
  CHECK(std::vector<float>(gv.begin(), gv.end()) == grads);
}

// The scheduler maps a closed connection (reported by descriptor) to the
// node that used it through Message::source_fd: every message that came
// over TCP must carry it. A ROUTER's routing-id frame often has none, and
// reading it there left the fd unknown for most messages (a killed node
// then went unnoticed until its heartbeat timeout).
TEST_CASE("every message received over TCP names the descriptor it came over") {
  zmq::context_t context{1};
  zmq::socket_t router{context, zmq::socket_type::router};
  ConfigureSocket(router);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  std::vector<zmq::socket_t> dealers;
  for (int d = 0; d < 3; ++d) {
    dealers.emplace_back(context, zmq::socket_type::dealer);
    ConfigureSocket(dealers.back());
    dealers.back().connect(endpoint);
  }
  constexpr int kPerDealer = 50;
  for (int i = 0; i < kPerDealer; ++i) {
    for (auto& dealer : dealers) {
      pb::Header h = PushHeader(0, 0);
      h.set_type(pb::HEARTBEAT);
      REQUIRE(SendMessage(dealer, h).ok());
    }
  }
  std::map<std::string, std::set<int>> fds_by_peer;
  int received = 0;
  while (received < kPerDealer * 3) {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(-1));
    while (true) {
      auto got = ReceiveMessage(router, /*from_router=*/true);
      REQUIRE(got.ok());
      if (!got->has_value()) break;
      ++received;
      fds_by_peer[(**got).routing_id->to_string()].insert((**got).source_fd);
    }
  }
  REQUIRE(fds_by_peer.size() == 3);
  std::set<int> all;
  for (const auto& [peer, fds] : fds_by_peer) {
    CHECK(fds.size() == 1);  // one connection, one descriptor, never "unknown"
    CHECK(*fds.begin() >= 0);
    all.insert(*fds.begin());
  }
  CHECK(all.size() == 3);
}

TEST_CASE("malformed messages are reported and consumed whole") {
  Pair p;
  const std::string valid_push = PushHeader(2, 1).SerializeAsString();
  SECTION("garbage header") { p.SendRaw({"\xff\xff\xff\xff not a protobuf"}); }
  SECTION("keys frame shorter than the header says") { p.SendRaw({valid_push, std::string(15, 'k'), std::string(8, 'v')}); }
  SECTION("values frame missing") { p.SendRaw({valid_push, std::string(16, 'k')}); }
  SECTION("unknown type") {
    pb::Header h;
    h.set_type(static_cast<pb::MsgType>(99));
    p.SendRaw({h.SerializeAsString()});
  }
  SECTION("control message with payload") {
    pb::Header h;
    h.set_type(pb::HEARTBEAT);
    p.SendRaw({h.SerializeAsString(), "extra"});
  }
  SECTION("too many frames") { p.SendRaw(std::vector<std::string>(20, "x")); }
  SECTION("fp16 values frame of fp32 size") {
    pb::Header h = PushHeader(2, 1);
    h.set_dtype(pb::FP16);
    p.SendRaw({h.SerializeAsString(), std::string(16, 'k'), std::string(8, 'v')});
  }
  SECTION("unknown value type") {
    pb::Header h = PushHeader(2, 1);
    h.set_dtype(static_cast<pb::ValueType>(7));
    p.SendRaw({h.SerializeAsString(), std::string(16, 'k'), std::string(8, 'v')});
  }
  SECTION("huge dim") { p.SendRaw({PushHeader(0, 1u << 30).SerializeAsString(), "", ""}); }
  pb::Header end;  // a shard stream's last message
  end.set_type(pb::SHARD_SNAPSHOT);
  end.set_last(true);
  end.set_dim(1);
  SECTION("a stream's end without its duplicate records") { p.SendRaw({end.SerializeAsString(), "", ""}); }
  SECTION("a stream's end with records of a partial word") {
    p.SendRaw({end.SerializeAsString(), "", "", std::string(12, 'r')});
  }
  auto bad = p.Receive();
  CHECK_FALSE(bad.ok());
  // The socket is still in sync: the next good message decodes.
  pb::Header hb;
  hb.set_type(pb::HEARTBEAT);
  REQUIRE(SendMessage(p.client, hb).ok());
  auto good = p.Receive();
  REQUIRE(good.ok());
  REQUIRE(good->has_value());
  CHECK((*good)->header.type() == pb::HEARTBEAT);
}

TEST_CASE("a shard stream's end carries the shard's duplicate records as words") {
  Pair p;
  pb::Header end;
  end.set_type(pb::SHARD_SNAPSHOT);
  end.set_last(true);
  end.set_dim(1);
  p.SendRaw({end.SerializeAsString(), "", "", std::string(16, 'r')});
  auto got = p.Receive();
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  REQUIRE((*got)->frames.size() == 3);
  CHECK((*got)->frames[2].size() == 16);
}

TEST_CASE("an fp16 push carries two bytes per value") {
  Pair p;
  pb::Header h = PushHeader(2, 3);
  h.set_dtype(pb::FP16);
  p.SendRaw({h.SerializeAsString(), std::string(16, 'k'), std::string(12, 'v')});
  auto got = p.Receive();
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK((*got)->header.dtype() == pb::FP16);
}

TEST_CASE("endpoints parse or fail cleanly") {
  std::string host;
  uint32_t port;
  REQUIRE(SplitHostPort("10.1.2.3:80", &host, &port).ok());
  CHECK(host == "10.1.2.3");
  CHECK(port == 80);
  CHECK_FALSE(SplitHostPort("nohost", &host, &port).ok());
  CHECK_FALSE(SplitHostPort("h:99999", &host, &port).ok());
  CHECK_FALSE(SplitHostPort("h:12x", &host, &port).ok());
}

}  // namespace
}  // namespace sparta::message_test
