// Replicator, a primary's forwards to its replicas, over real ZeroMQ
// sockets (the test plays the replica's ROUTER): a push goes to the
// replicas of its keys' shards; while a new replica waits for its shards'
// rows, forwards to it are held back and reach it after the snapshot, and a
// push whose forward is held is not acknowledged before the forward goes
// out, with ack "primary" as with "all", which is what bounds what is held.
#include "server/replicator.h"

#include <catch2/catch.hpp>

#include "common/message.h"
#include "common/socket_util.h"
#include "received_within.h"

namespace sparta {
namespace {

struct Fixture {
  explicit Fixture(bool ack_all) : replica(context, zmq::socket_type::router) {
    ConfigureSocket(replica);
    auto port = BindTcp(replica, "127.0.0.1", 0);
    REQUIRE(port.ok());
    cluster.local_transport_mode = LocalTransport::kTcp;
    replicator = std::make_unique<Replicator>(&context, cluster, /*self_id=*/1, /*self_rank=*/0, ack_all);
    // Two servers; server 0 leads every shard and server 1 replicates it.
    pb::ClusterView view;
    view.set_epoch(3);
    for (int rank = 0; rank < 2; ++rank) {
      pb::NodeInfo* node = view.add_nodes();
      node->set_role(pb::SERVER);
      node->set_rank(rank);
      node->set_id(rank + 1);
      node->set_host("127.0.0.1");
      node->set_data_port(rank == 1 ? *port : 1);
    }
    for (int s = 0; s < 4; ++s) {
      view.add_shard_owner(0);
      view.add_replicas()->add_ranks(1);
    }
    replicator->UpdateView(view, on_ack);
  }

  std::shared_ptr<Request> Push(uint64_t seq) {
    auto r = std::make_shared<Request>();
    r->message.header.set_type(pb::PUSH);
    r->message.header.set_sender(9);
    r->message.header.set_seq(seq);
    r->message.header.set_table(1);
    r->message.header.set_dim(2);
    r->message.header.set_num_keys(3);
    r->message.frames.push_back(FrameFromVector(std::vector<uint64_t>{10, 20, 30}));
    r->message.frames.push_back(FrameFromVector(std::vector<float>{1, 2, 3, 4, 5, 6}));
    r->key_scratch = {10, 20, 30};
    r->keys = r->key_scratch;
    return r;
  }

  // The next message the replica gets, if one comes within `ms`.
  std::optional<Message> Received(int ms) { return ReceivedWithin(replica, ms); }

  zmq::context_t context{1};
  zmq::socket_t replica;
  ClusterConfig cluster;
  std::unique_ptr<Replicator> replicator;
  std::vector<uint64_t> acknowledged;  // seq of the pushes on_ack was called for
  // A failed acknowledgement is recorded as seq 0, which no test expects.
  Replicator::AckCallback on_ack = [this](const std::shared_ptr<Request>& r, const absl::Status& st) {
    acknowledged.push_back(st.ok() ? r->message.header.seq() : 0);
  };
};

TEST_CASE("a push goes to its shards' replica as it was received", "[replicator]") {
  Fixture f(/*ack_all=*/false);
  auto push = f.Push(5);
  CHECK(f.replicator->Forward(push, 3) == 0);  // ack "primary": nothing to wait for
  auto got = f.Received(10000);
  REQUIRE(got.has_value());
  CHECK(got->header.type() == pb::REPLICATE);
  CHECK(got->header.origin() == 9);
  CHECK(got->header.seq() == 5);
  CHECK(got->header.num_keys() == 3);
  std::vector<uint64_t> scratch;
  const auto keys = FrameView<uint64_t>(got->frames[0], &scratch);
  CHECK(std::vector<uint64_t>(keys.begin(), keys.end()) == std::vector<uint64_t>{10, 20, 30});
}

TEST_CASE("forwards held for a new replica go after its snapshot, their pushes acknowledged then", "[replicator]") {
  for (bool ack_all : {false, true}) {
    Fixture f(ack_all);
    f.replicator->HoldForSnapshot(1);
    auto push = f.Push(7);
    // The push waits for its held forward (ack "all" also for the replica's answer).
    CHECK(f.replicator->Forward(push, 3) == 1);
    f.replicator->SendSnapshot(1, [] {
      pb::Header h;
      h.set_type(pb::SHARD_SNAPSHOT);
      h.set_last(true);
      h.set_dim(1);
      return h;
    }(), std::vector<zmq::message_t>(2));
    // The forward was sent first, but the snapshot arrives first (one
    // socket keeps order): the forward is held until SnapshotDone().
    auto first = f.Received(10000);
    REQUIRE(first.has_value());
    CHECK(first->header.type() == pb::SHARD_SNAPSHOT);
    CHECK(f.acknowledged.empty());
    f.replicator->SnapshotDone(1, f.on_ack);
    auto forward = f.Received(10000);
    REQUIRE(forward.has_value());
    CHECK(forward->header.type() == pb::REPLICATE);
    CHECK(forward->header.seq() == 7);
    // ack "primary": released once sent; ack "all": once the replica answers.
    CHECK(f.acknowledged == (ack_all ? std::vector<uint64_t>{} : std::vector<uint64_t>{7}));
    CHECK(f.replicator->peak_held_bytes() == 3 * sizeof(uint64_t) + 6 * sizeof(float));
  }
}

}  // namespace
}  // namespace sparta
