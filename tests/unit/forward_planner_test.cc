// ForwardPlanner, a primary's replication decisions without sockets: what a
// push's forward carries and to whom; which pieces wait for a new replica's
// snapshot and in what order they go; which answers complete which push,
// with ack "all" and "primary"; what a refusal and a dead replica mean for
// the pushes that wait. (replicator_test runs the same decisions over real
// sockets.)
#include "server/forward_planner.h"

#include <algorithm>

#include <catch2/catch.hpp>

#include "common/hash.h"
#include "common/message.h"

namespace sparta::forward_planner_test {
namespace {

constexpr int kShardBits = 2;  // 4 shards

// Servers 0..2; server 0 (this one, node 1) leads every shard, servers 1
// and 2 replicate each.
ShardView View(int replicas = 2) {
  pb::ClusterView view;
  view.set_epoch(3);
  for (int rank = 0; rank < 3; ++rank) {
    pb::NodeInfo* node = view.add_nodes();
    node->set_role(pb::SERVER);
    node->set_rank(rank);
    node->set_id(rank + 1);
  }
  for (int s = 0; s < (1 << kShardBits); ++s) {
    view.add_shard_owner(0);
    auto* ranks = view.add_replicas();
    for (int r = 1; r <= replicas; ++r) ranks->add_ranks(r);
  }
  return ShardView(view);
}

std::shared_ptr<Request> Push(uint64_t seq, std::vector<uint64_t> keys) {
  auto r = std::make_shared<Request>();
  r->message.header.set_type(pb::PUSH);
  r->message.header.set_sender(9);
  r->message.header.set_seq(seq);
  r->message.header.set_table(1);
  r->message.header.set_dim(2);
  r->message.header.set_step(40 + seq);
  r->message.header.set_num_keys(static_cast<uint32_t>(keys.size()));
  std::vector<float> values;
  for (uint64_t k : keys) values.insert(values.end(), {static_cast<float>(k), static_cast<float>(seq)});
  r->message.frames.push_back(FrameFromVector(std::vector<uint64_t>(keys)));
  r->message.frames.push_back(FrameFromVector(std::move(values)));
  r->key_scratch = std::move(keys);
  r->keys = r->key_scratch;
  return r;
}

std::vector<uint64_t> KeysOf(const ForwardPlanner::Send& send) {
  std::vector<uint64_t> scratch;
  const auto keys = FrameView<uint64_t>(send.frames[0], &scratch);
  return {keys.begin(), keys.end()};
}

pb::Header Answer(const ForwardPlanner::Send& send, int status = 0) {
  pb::Header h;
  h.set_type(pb::RESPONSE);
  h.set_origin(send.header.origin());
  h.set_seq(send.header.seq());
  h.set_catch_up(send.header.catch_up());
  h.set_status(status);
  if (status != 0) h.set_error("a newer view");
  return h;
}

// Keys of two different shards.
std::pair<uint64_t, uint64_t> KeysOfTwoShards() {
  uint64_t x = 1, y = 2;
  while (ShardOf(y, kShardBits) == ShardOf(x, kShardBits)) ++y;
  return {x, y};
}

struct Planner {
  explicit Planner(bool ack_all, size_t held_bytes_without_waiting = size_t{64} << 20)
      : planner(/*self_id=*/1, ack_all, held_bytes_without_waiting) {
    planner.SetShards(View());
    ForwardPlanner::Decisions none;
    planner.Connect(1, &none);
    planner.Connect(2, &none);
    REQUIRE(none.sends.empty());
    REQUIRE(none.acks.empty());
  }
  ForwardPlanner planner;
};

TEST_CASE("a push's forward goes to every replica of its shards, as the worker sent it", "[forward_planner]") {
  Planner p(/*ack_all=*/false);
  ForwardPlanner::Decisions d;
  auto push = Push(7, {10, 20, 30});
  CHECK(p.planner.Forward(push, /*epoch=*/3, nullptr, &d) == 0);  // ack "primary": nothing to wait for
  REQUIRE(d.sends.size() == 2);
  CHECK(d.acks.empty());
  for (uint32_t peer : {1u, 2u}) {
    const auto& send = d.sends[peer - 1];
    CHECK(send.peer == peer);
    CHECK(send.header.type() == pb::REPLICATE);
    CHECK(send.header.sender() == 1);  // this server
    CHECK(send.header.origin() == 9);  // the worker: replicas drop duplicates by it
    CHECK(send.header.seq() == 7);
    CHECK(send.header.epoch() == 3);
    CHECK(send.header.step() == 47);  // the same expiry stamps as the primary's
    CHECK(send.header.num_keys() == 3);
    CHECK_FALSE(send.header.catch_up());
    CHECK(KeysOf(send) == std::vector<uint64_t>{10, 20, 30});
    // The received buffer itself: no copy per replica.
    CHECK(send.frames[1].data() == push->message.frames[1].data());
  }
  CHECK(p.planner.awaiting() == 0);
}

TEST_CASE("with ack all a push is acknowledged once every replica has answered, and a refusal fails it",
          "[forward_planner]") {
  Planner p(/*ack_all=*/true);
  ForwardPlanner::Decisions d;
  CHECK(p.planner.Forward(Push(7, {10, 20}), 3, nullptr, &d) == 2);
  CHECK(p.planner.Forward(Push(8, {10}), 3, nullptr, &d) == 2);
  REQUIRE(d.sends.size() == 4);
  CHECK(p.planner.awaiting() == 4);
  // Each answer completes one of the push's two acknowledgements.
  auto first = p.planner.OnAnswer(1, Answer(d.sends[0]));
  REQUIRE(first.has_value());
  CHECK(first->request->message.header.seq() == 7);
  CHECK(first->status.ok());
  CHECK_FALSE(p.planner.OnAnswer(1, Answer(d.sends[0])).has_value());  // answered twice: already counted
  // Server 2 knows a newer view: this server is a stale primary, and the
  // worker must resend the push to the shard's current one.
  auto refused = p.planner.OnAnswer(2, Answer(d.sends[1], static_cast<int>(absl::StatusCode::kAborted)));
  REQUIRE(refused.has_value());
  CHECK(refused->status.code() == absl::StatusCode::kAborted);
  CHECK(refused->status.message() == "replica server-2: a newer view");
  CHECK(p.planner.awaiting() == 2);
}

TEST_CASE("a replica that dies owes no answers: the pushes waiting for it are acknowledged", "[forward_planner]") {
  Planner p(/*ack_all=*/true);
  ForwardPlanner::Decisions d;
  REQUIRE(p.planner.Forward(Push(7, {10}), 3, nullptr, &d) == 2);
  REQUIRE(p.planner.OnAnswer(1, Answer(d.sends[0])).has_value());
  ForwardPlanner::Decisions gone;
  p.planner.Disconnect(2, &gone);
  CHECK(gone.sends.empty());
  REQUIRE(gone.acks.size() == 1);
  CHECK(gone.acks[0].request->message.header.seq() == 7);
  CHECK(gone.acks[0].status.ok());
  CHECK(p.planner.awaiting() == 0);
  CHECK_FALSE(p.planner.live(2));
  // From now on forwards go to server 1 only.
  ForwardPlanner::Decisions next;
  CHECK(p.planner.Forward(Push(8, {10}), 3, nullptr, &next) == 1);
  REQUIRE(next.sends.size() == 1);
  CHECK(next.sends[0].peer == 1);
}

TEST_CASE("a streaming shard's keys wait for its snapshot, behind one another, and the rest go now",
          "[forward_planner]") {
  for (bool ack_all : {false, true}) {
    // A budget of 0: every held piece is too much, so pushes wait for them.
    Planner p(ack_all, /*held_bytes_without_waiting=*/0);
    const auto [x, y] = KeysOfTwoShards();
    const uint32_t streaming = ShardOf(x, kShardBits);
    p.planner.HoldForSnapshot(1, streaming);
    ForwardPlanner::Decisions d;
    CHECK(p.planner.Forward(Push(1, {x, y}), 3, nullptr, &d) == (ack_all ? 2 : 1));
    CHECK(p.planner.Forward(Push(2, {y}), 3, nullptr, &d) == (ack_all ? 2 : 0));
    CHECK(p.planner.Forward(Push(3, {x}), 3, nullptr, &d) == (ack_all ? 2 : 1));
    // To server 1 only y's pieces went; server 2 got every push whole.
    std::vector<std::pair<uint64_t, std::vector<uint64_t>>> to_1, to_2;
    for (const auto& send : d.sends) {
      (send.peer == 1 ? to_1 : to_2).push_back({send.header.seq(), KeysOf(send)});
    }
    CHECK(to_1 == std::vector<std::pair<uint64_t, std::vector<uint64_t>>>{{1, {y}}, {2, {y}}});
    CHECK(to_2.size() == 3);
    CHECK(d.acks.empty());
    CHECK(p.planner.peak_held_bytes() == 2 * (sizeof(uint64_t) + 2 * sizeof(float)));
    // The snapshot is in: x's pieces go, in the primary's order.
    ForwardPlanner::Decisions done;
    p.planner.SnapshotDone(1, streaming, &done);
    REQUIRE(done.sends.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
      CHECK(done.sends[i].peer == 1);
      CHECK(done.sends[i].header.seq() == (i == 0 ? 1u : 3u));
      CHECK(KeysOf(done.sends[i]) == std::vector<uint64_t>{x});
      CHECK_FALSE(done.sends[i].header.catch_up());  // over the budget: awaited
    }
    if (!ack_all) {
      // ack "primary": a push waited only for its held piece to go out.
      std::vector<uint64_t> acked;
      for (const auto& ack : done.acks) acked.push_back(ack.request->message.header.seq());
      CHECK(acked == std::vector<uint64_t>{1, 3});
      continue;
    }
    CHECK(done.acks.empty());
    // ack "all": push 1 is done once server 1 answered both of its pieces.
    CHECK_FALSE(p.planner.OnAnswer(1, Answer(d.sends[0])).has_value());  // its y piece
    auto one = p.planner.OnAnswer(1, Answer(done.sends[0]));            // its x piece
    REQUIRE(one.has_value());
    CHECK(one->request->message.header.seq() == 1);
  }
}

TEST_CASE("under the held budget a push does not wait for a copy still catching up", "[forward_planner]") {
  Planner p(/*ack_all=*/true);
  const auto [x, y] = KeysOfTwoShards();
  p.planner.HoldForSnapshot(1, ShardOf(x, kShardBits));
  ForwardPlanner::Decisions d;
  // Server 1 gets y now (awaited) and x later (catch-up, not awaited);
  // server 2 gets the push whole.
  CHECK(p.planner.Forward(Push(1, {x, y}), 3, nullptr, &d) == 2);
  ForwardPlanner::Decisions done;
  p.planner.SnapshotDone(1, ShardOf(x, kShardBits), &done);
  REQUIRE(done.sends.size() == 1);
  CHECK(done.sends[0].header.catch_up());
  // Its answer completes nothing, even a refusal (the replica left the shard).
  CHECK_FALSE(p.planner.OnAnswer(1, Answer(done.sends[0], static_cast<int>(absl::StatusCode::kAborted))));
  // Its two acknowledgements: server 1's piece sent now, and server 2.
  CHECK(p.planner.OnAnswer(1, Answer(d.sends[0])).has_value());
  auto other = p.planner.OnAnswer(2, Answer(d.sends[1]));
  REQUIRE(other.has_value());
  CHECK(other->status.ok());
  CHECK(p.planner.awaiting() == 0);
}

TEST_CASE("a server that takes a rank over starts from nothing: what was held for the last one is dropped",
          "[forward_planner]") {
  Planner p(/*ack_all=*/false, /*held_bytes_without_waiting=*/0);
  const auto [x, y] = KeysOfTwoShards();
  p.planner.HoldForSnapshot(1, ShardOf(x, kShardBits));
  ForwardPlanner::Decisions d;
  REQUIRE(p.planner.Forward(Push(1, {x}), 3, nullptr, &d) == 1);  // waits for its held piece
  ForwardPlanner::Decisions replaced;
  p.planner.Connect(1, &replaced);
  CHECK(replaced.sends.empty());
  REQUIRE(replaced.acks.size() == 1);  // the push no longer waits
  CHECK(replaced.acks[0].request->message.header.seq() == 1);
  // The new server's shard is not streaming: forwards go at once.
  ForwardPlanner::Decisions next;
  CHECK(p.planner.Forward(Push(2, {x}), 3, nullptr, &next) == 0);
  CHECK(next.sends.size() == 2);
}

}  // namespace
}  // namespace sparta::forward_planner_test
