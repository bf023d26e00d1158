// Replicator, a primary's forwards to its replicas, over real ZeroMQ
// sockets (the test plays the replica's ROUTER): a push goes to the
// replicas of its keys' shards; while a new replica waits for its shards'
// rows, forwards to it are held back and reach it after the snapshot (only
// those of the streaming shards, and those behind them in a shard's order),
// and a push whose forward is held is not acknowledged before the forward
// goes out, with ack "primary" as with "all", which is what bounds what is
// held.
#include "server/replicator.h"

#include <chrono>
#include <thread>

#include <catch2/catch.hpp>

#include "common/hash.h"
#include "common/message.h"
#include "common/socket_util.h"
#include "received_within.h"

namespace sparta::replicator_test {
namespace {

struct Fixture {
  explicit Fixture(bool ack_all, size_t held_bytes_without_waiting = Replicator::kHeldBytesWithoutWaiting,
                   const std::vector<pb::TableSpec>& tables = {})
      : replica(context, zmq::socket_type::router) {
    ConfigureSocket(replica);
    auto port = BindTcp(replica, "127.0.0.1", 0);
    REQUIRE(port.ok());
    cluster.local_transport_mode = LocalTransport::kTcp;
    replicator = std::make_unique<Replicator>(&context, cluster, /*self_id=*/1, /*self_rank=*/0, ack_all,
                                              held_bytes_without_waiting);
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
    replicator->UpdateView(view, on_ack, tables);
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

TEST_CASE("a server connected to is told this server's tables before its first forward", "[replicator]") {
  // A server that joins a running job got no CREATE_TABLE from the workers;
  // a forward of a table it does not know is refused, which failed the
  // push back to its worker although it was applied here.
  std::vector<pb::TableSpec> tables(2);
  tables[0].set_id(1);
  tables[0].set_name("weights");
  tables[0].set_dim(2);
  tables[1].set_id(4);
  tables[1].set_name("embeddings");
  tables[1].set_dim(8);
  Fixture f(/*ack_all=*/true, Replicator::kHeldBytesWithoutWaiting, tables);
  CHECK(f.replicator->Forward(f.Push(5), 3) == 1);
  for (const pb::TableSpec& spec : tables) {
    auto got = f.Received(10000);
    REQUIRE(got.has_value());
    CHECK(got->header.type() == pb::CREATE_TABLE);
    CHECK(got->header.table_spec().id() == spec.id());
    CHECK(got->header.table_spec().name() == spec.name());
    CHECK(got->header.table_spec().dim() == spec.dim());
  }
  auto forward = f.Received(10000);
  REQUIRE(forward.has_value());
  CHECK(forward->header.type() == pb::REPLICATE);
  CHECK(forward->header.seq() == 5);
  // The answers to CREATE_TABLE (seq 0) acknowledge no push.
  pb::Header answer;
  answer.set_type(pb::RESPONSE);
  REQUIRE(SendMessage(f.replica, answer, nullptr, &*forward->routing_id).ok());
  answer.set_origin(9);
  answer.set_seq(5);
  REQUIRE(SendMessage(f.replica, answer, nullptr, &*forward->routing_id).ok());
  for (int i = 0; i < 500 && f.acknowledged.empty(); ++i) {
    std::vector<zmq::pollitem_t> items;
    f.replicator->AddPollItems(&items);
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(20));
    f.replicator->ReceiveAcks(f.on_ack, [](const pb::Header&) {});
  }
  CHECK(f.acknowledged == std::vector<uint64_t>{5});
}

TEST_CASE("forwards held for a new replica go after its snapshot, and pushes wait for them only when too much is held",
          "[replicator]") {
  for (bool ack_all : {false, true}) {
    for (bool over_limit : {false, true}) {
      // A limit of 0: every held forward is too much.
      Fixture f(ack_all, over_limit ? 0 : Replicator::kHeldBytesWithoutWaiting);
      for (uint32_t shard = 0; shard < 4; ++shard) f.replicator->HoldForSnapshot(1, shard);
      auto push = f.Push(7);
      // Under the limit the push does not wait for a copy still catching up.
      CHECK(f.replicator->Forward(push, 3) == (over_limit ? 1 : 0));
      f.replicator->SendSnapshot(1, [] {
        pb::Header h;
        h.set_type(pb::SHARD_SNAPSHOT);
        h.set_last(true);
        h.set_dim(1);
        return h;
      }(), std::vector<zmq::message_t>(3));
      // The forward was sent first, but the snapshot arrives first (one
      // socket keeps order): the forward is held until SnapshotDone().
      auto first = f.Received(10000);
      REQUIRE(first.has_value());
      CHECK(first->header.type() == pb::SHARD_SNAPSHOT);
      CHECK(f.acknowledged.empty());
      const uint32_t last = ShardOf(10, /*shard_bits=*/2);  // a shard of the push's keys
      for (uint32_t shard = 0; shard < 4; ++shard) {
        if (shard != last) f.replicator->SnapshotDone(1, shard, f.on_ack);
      }
      CHECK_FALSE(f.Received(200).has_value());  // `last` still streams
      f.replicator->SnapshotDone(1, last, f.on_ack);
      auto forward = f.Received(10000);
      REQUIRE(forward.has_value());
      CHECK(forward->header.type() == pb::REPLICATE);
      CHECK(forward->header.seq() == 7);
      CHECK(forward->header.catch_up() == !over_limit);  // its answer is not waited for
      // Over the limit, ack "primary": released once sent; ack "all": once
      // the replica answers.
      CHECK(f.acknowledged == (over_limit && !ack_all ? std::vector<uint64_t>{7} : std::vector<uint64_t>{}));
      CHECK(f.replicator->peak_held_bytes() == 3 * sizeof(uint64_t) + 6 * sizeof(float));
    }
  }
}

TEST_CASE("only a streaming shard's keys wait: a forward is split, each shard keeps its order", "[replicator]") {
  // A drain or a join streams many shards to one server one after another,
  // and a worker's batch touches nearly every shard: held whole, every push
  // would wait for the last stream.
  // A limit of 0: pushes wait for their held pieces (else they would not).
  for (bool ack_all : {false, true}) {
    Fixture f(ack_all, /*held_bytes_without_waiting=*/0);
    auto push_of = [&](uint64_t seq, std::vector<uint64_t> keys) {
      auto r = f.Push(seq);
      r->message.header.set_num_keys(static_cast<uint32_t>(keys.size()));
      r->message.frames[0] = FrameFromVector(std::vector<uint64_t>(keys));
      std::vector<float> values;
      for (uint64_t k : keys) values.insert(values.end(), {static_cast<float>(k), static_cast<float>(seq)});
      r->message.frames[1] = FrameFromVector(std::move(values));
      r->key_scratch = keys;
      r->keys = r->key_scratch;
      return r;
    };
    auto keys_of = [](const Message& m) {
      std::vector<uint64_t> scratch;
      const auto keys = FrameView<uint64_t>(m.frames[0], &scratch);
      return std::vector<uint64_t>(keys.begin(), keys.end());
    };
    // Keys x and y of two shards (of 4).
    const int bits = 2;
    uint64_t x = 1, y = 2;
    while (ShardOf(y, bits) == ShardOf(x, bits)) ++y;
    const uint32_t streaming = ShardOf(x, bits);
    f.replicator->HoldForSnapshot(1, streaming);
    // Push 1's key y goes now, its key x waits for the stream.
    CHECK(f.replicator->Forward(push_of(1, {x, y}), 3) == (ack_all ? 1 : 1));
    // Push 2 touches only y's shard: it goes now, after push 1's piece.
    CHECK(f.replicator->Forward(push_of(2, {y}), 3) == (ack_all ? 1 : 0));
    // Push 3's x waits behind push 1's.
    CHECK(f.replicator->Forward(push_of(3, {x}), 3) == 1);
    std::vector<Message> pieces;  // as the replica got them, to answer
    for (auto [seq, key] : std::vector<std::pair<uint64_t, uint64_t>>{{1, y}, {2, y}}) {
      auto received = f.Received(10000);
      REQUIRE(received.has_value());
      pieces.push_back(std::move(*received));
      const Message* got = &pieces.back();
      CHECK(got->header.seq() == seq);
      CHECK(got->header.origin() == 9);
      CHECK(keys_of(*got) == std::vector<uint64_t>{key});
      std::vector<float> scratch;
      const auto values = FrameView<float>(got->frames[1], &scratch);
      CHECK(std::vector<float>(values.begin(), values.end()) == std::vector<float>{static_cast<float>(key),
                                                                                    static_cast<float>(seq)});
    }
    CHECK_FALSE(f.Received(200).has_value());
    CHECK(f.acknowledged.empty());
    f.replicator->SnapshotDone(1, streaming, f.on_ack);
    for (uint64_t seq : {1, 3}) {  // x's updates, in the primary's order
      auto got = f.Received(10000);
      REQUIRE(got.has_value());
      CHECK(got->header.seq() == seq);
      CHECK(keys_of(*got) == std::vector<uint64_t>{x});
      pieces.push_back(std::move(*got));
    }
    // ack "primary": each push is released once its held piece went out;
    // ack "all": once the replica answered every piece of it.
    CHECK(f.acknowledged == (ack_all ? std::vector<uint64_t>{} : std::vector<uint64_t>{1, 3}));
    if (!ack_all) continue;
    auto answer = [&](const Message& piece) {
      pb::Header h;
      h.set_type(pb::RESPONSE);
      h.set_origin(piece.header.origin());
      h.set_seq(piece.header.seq());
      std::vector<zmq::message_t> none;
      REQUIRE(SendMessage(f.replica, h, &none, &*piece.routing_id).ok());
    };
    auto acknowledged_within = [&](size_t n) {
      for (int i = 0; i < 1000 && f.acknowledged.size() < n; ++i) {
        f.replicator->ReceiveAcks(f.on_ack, [](const pb::Header&) {});
        if (f.acknowledged.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      return f.acknowledged;
    };
    answer(pieces[0]);  // push 1's first piece (y)
    answer(pieces[1]);  // push 2, whole
    CHECK(acknowledged_within(1) == std::vector<uint64_t>{2});
    answer(pieces[2]);  // push 1's second piece (x)
    answer(pieces[3]);  // push 3
    CHECK(acknowledged_within(3) == std::vector<uint64_t>{2, 1, 3});
  }
}

}  // namespace
}  // namespace sparta::replicator_test
