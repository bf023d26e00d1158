// RequestRouter, the server's decisions on a data-plane request, without
// sockets: which requests it refuses and why (epoch, table, row width, a
// pull too large), that a push applied before is only acknowledged, and how
// the keys of a request it takes are split among executors, or refused
// whole when one lies in a shard the server does not serve; and the same
// for a part of a shard streamed to a new replica.
#include "server/request_router.h"

#include <algorithm>

#include <catch2/catch.hpp>

namespace sparta::request_router_test {
namespace {

constexpr uint32_t kTable = 2;

struct Fixture {
  Fixture() : tables(&config) {
    pb::TableSpec spec;
    spec.set_id(kTable);
    spec.set_name("t");
    spec.set_dim(4);
    spec.mutable_optimizer()->set_type(pb::OptimizerSpec::SGD);
    spec.mutable_optimizer()->set_learning_rate(0.1f);
    REQUIRE(tables.Create(spec).ok());
    // 8 shards over 2 servers: server s % 2 leads shard s; the other one
    // replicates it.
    pb::ClusterView v;
    v.set_epoch(5);
    for (uint32_t s = 0; s < 8; ++s) {
      v.add_shard_owner(s % 2);
      v.add_replicas()->add_ranks((s + 1) % 2);
    }
    // Server 0 is node 8, server 1 node 9.
    for (uint32_t rank = 0; rank < 2; ++rank) {
      pb::NodeInfo* node = v.add_nodes();
      node->set_role(pb::SERVER);
      node->set_rank(rank);
      node->set_id(8 + rank);
    }
    view = ShardView(v);
  }
  pb::Header Request(pb::MsgType type, uint64_t epoch = 5, uint32_t dim = 4) const {
    pb::Header h;
    h.set_type(type);
    h.set_epoch(epoch);
    h.set_table(kTable);
    h.set_dim(dim);
    h.set_num_keys(10);
    h.set_sender(9);
    h.set_seq(1);
    return h;
  }
  Config config;
  TableRegistry tables;
  DuplicateFilter duplicates;
  bool skipped = false;  // Plan()'s: shards skipped as applied before
  ShardView view;
};

TEST_CASE("a request is taken only at the server's epoch, for a table it has, at the table's width",
          "[request_router]") {
  Fixture f;
  RequestRouter router(2, 8);
  auto served = router.Admit(f.Request(pb::PUSH), 5, f.tables);
  CHECK(served.verdict == RequestRouter::Verdict::kServe);
  CHECK(served.table == f.tables.Find(kTable));

  auto stale = router.Admit(f.Request(pb::PULL, 4), 5, f.tables);
  CHECK(stale.verdict == RequestRouter::Verdict::kRefuse);
  CHECK(stale.refusal.code() == absl::StatusCode::kAborted);  // the worker resends under the new view
  CHECK(router.Admit(f.Request(pb::PUSH, 6), 5, f.tables).verdict == RequestRouter::Verdict::kRefuse);
  // A forward may come from a primary that already has a newer view, or
  // from one that is behind (Plan() judges it by shard).
  CHECK(router.Admit(f.Request(pb::REPLICATE, 6), 5, f.tables).verdict ==
        RequestRouter::Verdict::kServe);
  CHECK(router.Admit(f.Request(pb::REPLICATE, 4), 5, f.tables).verdict ==
        RequestRouter::Verdict::kServe);

  pb::Header other = f.Request(pb::PULL);
  other.set_table(3);
  CHECK(router.Admit(other, 5, f.tables).refusal.code() == absl::StatusCode::kNotFound);
  auto wide = router.Admit(f.Request(pb::PUSH, 5, 8), 5, f.tables);
  CHECK(wide.refusal.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(wide.refusal.message()), Catch::Contains("push of dim 8 to table 't' of dim 4"));
  // Pulls carry no values: their dim is the table's anyway.
  CHECK(router.Admit(f.Request(pb::PULL, 5, 8), 5, f.tables).verdict == RequestRouter::Verdict::kServe);

  pb::Header huge = f.Request(pb::PULL);
  huge.set_num_keys(100000000);  // 1.6 GB of rows
  CHECK(router.Admit(huge, 5, f.tables).refusal.code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("a serving cluster's server answers pulls and refuses pushes", "[request_router]") {
  Fixture f;
  RequestRouter router(2, 8, /*read_only=*/true);
  CHECK(router.Admit(f.Request(pb::PULL), 5, f.tables).verdict == RequestRouter::Verdict::kServe);
  auto push = router.Admit(f.Request(pb::PUSH), 5, f.tables);
  REQUIRE(push.verdict == RequestRouter::Verdict::kRefuse);
  CHECK(push.refusal.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(push.refusal.message()), Catch::Contains("read-only"));
  // The same push, to a training job's server, is applied.
  CHECK(RequestRouter(2, 8).Admit(f.Request(pb::PUSH), 5, f.tables).verdict == RequestRouter::Verdict::kServe);
}

TEST_CASE("a push applied before to a shard skips that shard's keys and a part for another shard is applied",
          "[request_router]") {
  Fixture f;
  RequestRouter router(2, 8);
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; keys.size() < 20; ++k) {
    if (f.view.owner_of_key(k) == 0) keys.push_back(k);
  }
  std::vector<ShardTask> tasks;
  std::vector<uint32_t> updated;
  REQUIRE(router.Plan(f.Request(pb::PUSH), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK_FALSE(f.skipped);
  REQUIRE(updated.size() >= 2);
  // Push 1 of sender 9 was applied to the first of its shards before
  // (forwarded here as a part of the same push, split another way).
  const uint32_t done = updated[0];
  f.duplicates.Record(done, 9, 1);
  REQUIRE(router.Plan(f.Request(pb::PUSH), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK(f.skipped);
  CHECK(std::find(updated.begin(), updated.end(), done) == updated.end());
  size_t planned = 0;
  for (const ShardTask& t : tasks) {
    planned += t.positions.size();
    for (uint32_t pos : t.positions) CHECK(f.view.shard_of(keys[pos]) != done);
  }
  size_t in_done = 0;
  for (uint64_t k : keys) in_done += f.view.shard_of(k) == done;
  CHECK(planned == keys.size() - in_done);
  // A forward names its worker as origin: the same push, from a primary.
  pb::Header forward = f.Request(pb::REPLICATE);
  forward.set_sender(3);
  forward.set_origin(9);
  REQUIRE(router.Plan(forward, keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK(f.skipped);
  // Another worker's push 1 is new everywhere; a pull is always served whole.
  forward.set_origin(4);
  REQUIRE(router.Plan(forward, keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK_FALSE(f.skipped);
  REQUIRE(router.Plan(f.Request(pb::PULL), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK_FALSE(f.skipped);
  planned = 0;
  for (const ShardTask& t : tasks) planned += t.positions.size();
  CHECK(planned == keys.size());
  // Applied before to every shard: nothing is planned, and it is acknowledged.
  std::vector<uint32_t> all;
  for (uint64_t k : keys) f.duplicates.Record(f.view.shard_of(k), 9, 1);
  REQUIRE(router.Plan(f.Request(pb::PUSH), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK(updated.empty());
  for (const ShardTask& t : tasks) CHECK(t.positions.empty());
}

TEST_CASE("keys are split among executors by shard, each updated shard counted once", "[request_router]") {
  Fixture f;
  RequestRouter router(/*executors=*/2, 8);
  // Keys of server 0's shards (0, 2, 4, 6), some twice over.
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; keys.size() < 40; ++k) {
    if (f.view.owner_of_key(k) == 0) keys.push_back(k);
  }
  std::vector<ShardTask> tasks;
  std::vector<uint32_t> updated;
  REQUIRE(router.Plan(f.Request(pb::PUSH), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  REQUIRE(tasks.size() == 2);
  size_t routed = 0;
  for (int e = 0; e < 2; ++e) {
    const ShardTask& t = tasks[e];
    REQUIRE(t.positions.size() == t.local_shards.size());
    for (size_t j = 0; j < t.positions.size(); ++j) {
      if (j > 0) CHECK(t.positions[j] > t.positions[j - 1]);  // request order
      const uint32_t shard = f.view.shard_of(keys[t.positions[j]]);
      CHECK(shard % 2 == static_cast<uint32_t>(e));
      CHECK(t.local_shards[j] == shard / 2);
    }
    routed += t.positions.size();
  }
  CHECK(routed == keys.size());
  std::vector<uint32_t> expected;
  for (uint64_t k : keys) {
    const uint32_t s = f.view.shard_of(k);
    if (std::find(expected.begin(), expected.end(), s) == expected.end()) expected.push_back(s);
  }
  CHECK(updated == expected);
  // The next request counts its shards again; a pull counts none.
  REQUIRE(router.Plan(f.Request(pb::PUSH), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK(updated == expected);
  REQUIRE(router.Plan(f.Request(pb::PULL), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK(updated.empty());
}

TEST_CASE("a large request's keys reach each executor shard by shard, each shard's in request order",
          "[request_router]") {
  Fixture f;
  // Server 0 leads shards 0, 2, 4 and 6: two for executor 0, two for 2.
  RequestRouter router(/*executors=*/4, 8);
  // Server 0's keys, each twice (a request may repeat a key: its updates
  // must still apply in the request's order).
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; keys.size() < 8 * RequestRouter::kGroupAtLeast; ++k) {
    if (f.view.owner_of_key(k) == 0) keys.insert(keys.end(), {k, k});
  }
  std::vector<ShardTask> tasks;
  std::vector<uint32_t> updated;
  REQUIRE(router.Plan(f.Request(pb::PUSH), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  std::vector<uint32_t> seen;
  for (int e : {0, 2}) {
    const ShardTask& t = tasks[e];
    REQUIRE(t.positions.size() == t.local_shards.size());
    REQUIRE(t.positions.size() >= RequestRouter::kGroupAtLeast);
    CHECK(t.local_shards.front() == 0);
    CHECK(t.local_shards.back() == 1);
    for (size_t j = 0; j < t.positions.size(); ++j) {
      const uint32_t shard = f.view.shard_of(keys[t.positions[j]]);
      CHECK(shard % 4 == static_cast<uint32_t>(e));
      CHECK(t.local_shards[j] == shard / 4);
      if (j == 0) continue;
      CHECK(t.local_shards[j] >= t.local_shards[j - 1]);  // grouped
      if (t.local_shards[j] == t.local_shards[j - 1]) CHECK(t.positions[j] > t.positions[j - 1]);  // stable
    }
    seen.insert(seen.end(), t.positions.begin(), t.positions.end());
  }
  std::sort(seen.begin(), seen.end());
  std::vector<uint32_t> all(keys.size());
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = i;
  CHECK(seen == all);  // every key once
}

TEST_CASE("a key in a shard the server does not serve refuses the whole request", "[request_router]") {
  Fixture f;
  RequestRouter router(2, 8);
  std::vector<uint64_t> keys;
  uint64_t foreign = 0;
  for (uint64_t k = 0; keys.size() < 10; ++k) {
    if (f.view.owner_of_key(k) == 0) keys.push_back(k);
  }
  for (uint64_t k = 0;; ++k) {
    if (f.view.owner_of_key(k) == 1) {
      foreign = k;
      break;
    }
  }
  keys.push_back(foreign);
  std::vector<ShardTask> tasks;
  std::vector<uint32_t> updated;
  absl::Status st = router.Plan(f.Request(pb::PUSH), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped);
  CHECK(st.code() == absl::StatusCode::kAborted);
  CHECK_THAT(std::string(st.message()), Catch::Contains("key " + std::to_string(foreign) + " is in shard"));
  CHECK_THAT(std::string(st.message()), Catch::Contains("which server 1 leads at epoch 5"));
  CHECK(updated.empty());
  for (const ShardTask& t : tasks) CHECK(t.positions.empty());
  // Server 0 replicates server 1's shards: a forward of that key is served.
  CHECK(router.Plan(f.Request(pb::REPLICATE), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
}

TEST_CASE("a worker's request touching a shard its primary hands off is held back whole while its forwards still apply",
          "[request_router]") {
  Fixture f;
  // The view of epoch 6 marks shard 2 (server 0 leads it) as handing off.
  pb::ClusterView v;
  v.set_epoch(6);
  for (uint32_t s = 0; s < 8; ++s) {
    v.add_shard_owner(s % 2);
    auto* copies = v.add_replicas();
    copies->add_ranks((s + 1) % 2);
    copies->set_handing_off(s == 2);
  }
  const ShardView view(v);
  RequestRouter router(2, 8);
  std::vector<uint64_t> others, keys;
  uint64_t moving = 0;
  for (uint64_t k = 0; others.size() < 10 || moving == 0; ++k) {
    const uint32_t shard = view.shard_of(k);
    if (shard == 2 && moving == 0) moving = k;
    if (shard != 2 && view.owner(shard) == 0 && others.size() < 10) others.push_back(k);
  }
  keys = others;
  keys.push_back(moving);
  std::vector<ShardTask> tasks;
  std::vector<uint32_t> updated;
  for (pb::MsgType type : {pb::PUSH, pb::PULL}) {
    const absl::Status st = router.Plan(f.Request(type, 6), keys, view, 0, f.duplicates, &tasks, &updated, &f.skipped);
    CHECK(st.code() == absl::StatusCode::kUnavailable);
    CHECK_THAT(std::string(st.message()), Catch::Contains("shard 2, which this server hands off at epoch 6"));
    CHECK(updated.empty());
    for (const ShardTask& t : tasks) CHECK(t.positions.empty());
  }
  // The other shards go on.
  CHECK(router.Plan(f.Request(pb::PUSH, 6), others, view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK(updated.size() > 0);
  // The replica of shard 2 applies its primary's forwards until the switch.
  std::vector<uint64_t> replica_keys = {moving};
  CHECK(router.Plan(f.Request(pb::REPLICATE, 6), replica_keys, view, 1, f.duplicates, &tasks, &updated, &f.skipped).ok());
  // Without the mark, the same request is planned.
  CHECK(router.Plan(f.Request(pb::PUSH), keys, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
}

TEST_CASE("a shard's snapshot part: refused from a stale primary unless awaited, its table made, its width checked",
          "[request_router]") {
  Fixture f;
  RequestRouter router(2, 8);
  pb::TableSpec spec;
  spec.set_id(7);
  spec.set_name("new");
  spec.set_dim(3);
  spec.mutable_optimizer()->set_type(pb::OptimizerSpec::ADAGRAD);
  spec.mutable_optimizer()->set_learning_rate(0.1f);
  auto part = [&](uint64_t epoch, uint32_t shard, uint32_t dim) {
    pb::Header h;
    h.set_type(pb::SHARD_SNAPSHOT);
    h.set_epoch(epoch);
    h.set_shard(shard);
    h.set_dim(dim);
    *h.mutable_table_spec() = spec;
    return h;
  };
  const uint32_t row = 3 + 3;  // weights, then Adagrad's sums

  CHECK(router.AdmitSnapshot(part(5, 8, row), 5, true, &f.tables, nullptr).verdict ==
        RequestRouter::SnapshotVerdict::kDrop);  // shard 8 of 8 does not exist
  auto stale = router.AdmitSnapshot(part(4, 3, row), 5, /*waiting=*/false, &f.tables, nullptr);
  CHECK(stale.verdict == RequestRouter::SnapshotVerdict::kRefuse);
  CHECK(stale.refusal.code() == absl::StatusCode::kAborted);
  CHECK(f.tables.Find(7) == nullptr);  // nothing made for a refused part

  // Still awaited: an older view's part is what this replica needs.
  auto rows = router.AdmitSnapshot(part(4, 3, row), 5, /*waiting=*/true, &f.tables, nullptr);
  CHECK(rows.verdict == RequestRouter::SnapshotVerdict::kRows);
  REQUIRE(rows.table == f.tables.Find(7));
  CHECK(rows.table->spec.dim() == 3);
  CHECK(rows.stride == row);
  // With a TTL's stamp after each row.
  CHECK(router.AdmitSnapshot(part(5, 3, row + 1), 5, false, &f.tables, nullptr).stride == row + 1);
  auto narrow = router.AdmitSnapshot(part(5, 3, 3), 5, false, &f.tables, nullptr);
  CHECK(narrow.verdict == RequestRouter::SnapshotVerdict::kRefuse);
  CHECK(narrow.refusal.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(narrow.refusal.message()), Catch::Contains("do not fit table 'new'"));

  pb::Header counters = part(5, 3, 1);
  counters.set_admission_sketch(true);
  auto sketch = router.AdmitSnapshot(counters, 5, false, &f.tables, nullptr);
  CHECK(sketch.verdict == RequestRouter::SnapshotVerdict::kAdmission);
  CHECK(sketch.table == f.tables.Find(7));

  pb::Header end = part(5, 3, 1);
  end.set_last(true);
  CHECK(router.AdmitSnapshot(end, 5, true, &f.tables, nullptr).verdict == RequestRouter::SnapshotVerdict::kWhole);

  // A table that clashes with one this server has (same id, another width).
  spec.set_dim(5);
  auto clash = router.AdmitSnapshot(part(5, 3, 10), 5, false, &f.tables, nullptr);
  CHECK(clash.verdict == RequestRouter::SnapshotVerdict::kRefuse);
}

TEST_CASE("a forward of an older view is taken for the shards its sender still leads, refused as stale for others",
          "[request_router]") {
  Fixture f;
  RequestRouter router(2, 8);
  std::vector<uint64_t> led_by_1, led_by_0;  // keys of shards server 1 (node 9) and server 0 lead
  for (uint64_t k = 0; led_by_1.size() < 4 || led_by_0.size() < 4; ++k) {
    (f.view.owner_of_key(k) == 1 ? led_by_1 : led_by_0).push_back(k);
  }
  std::vector<ShardTask> tasks;
  std::vector<uint32_t> updated;
  pb::Header forward = f.Request(pb::REPLICATE, 4);  // from node 9 (server 1), one view behind
  // A view change elsewhere: server 1 still leads these shards, and server 0
  // replicates them.
  CHECK(router.Plan(forward, led_by_1, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  CHECK(updated.size() >= 1);
  // Server 1 does not lead these (server 0 does): it is a stale primary.
  std::vector<uint64_t> mixed = led_by_1;
  mixed.push_back(led_by_0[0]);
  absl::Status st = router.Plan(forward, mixed, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped);
  CHECK(st.code() == absl::StatusCode::kAborted);
  CHECK_THAT(std::string(st.message()), Catch::Contains("no longer leads"));
  CHECK(updated.empty());
  for (const ShardTask& t : tasks) CHECK(t.positions.empty());
  // A sender that is no live server of the view leads nothing.
  forward.set_sender(12);
  CHECK(router.Plan(forward, led_by_1, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).code() == absl::StatusCode::kAborted);
  // At the view's own epoch the same keys are served: a replica of server 1's
  // shards takes what server 1's view says.
  forward.set_sender(9);
  forward.set_epoch(5);
  CHECK(router.Plan(forward, led_by_1, f.view, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
}

TEST_CASE("a forward of an older view skips the shards whose copy moved off this server, applies the rest",
          "[request_router]") {
  Fixture f;
  RequestRouter router(2, 8);
  // A later view: server 1 still leads its shards, but shard 1's replica
  // moved from server 0 to a server 2 that joined.
  pb::ClusterView v;
  v.set_epoch(6);
  for (uint32_t s = 0; s < 8; ++s) {
    v.add_shard_owner(s % 2);
    v.add_replicas()->add_ranks(s == 1 ? 2 : (s + 1) % 2);
  }
  for (uint32_t rank = 0; rank < 3; ++rank) {
    pb::NodeInfo* node = v.add_nodes();
    node->set_role(pb::SERVER);
    node->set_rank(rank);
    node->set_id(8 + rank);
  }
  const ShardView later(v);
  std::vector<uint64_t> keys;  // keys of shards 1 and 3, both led by server 1
  uint64_t in_shard_1 = 0, in_shard_3 = 0;
  for (uint64_t k = 0; in_shard_1 == 0 || in_shard_3 == 0; ++k) {
    if (later.shard_of(k) == 1 && in_shard_1 == 0) in_shard_1 = k;
    if (later.shard_of(k) == 3 && in_shard_3 == 0) in_shard_3 = k;
  }
  keys = {in_shard_3, in_shard_1, in_shard_3};
  std::vector<ShardTask> tasks;
  std::vector<uint32_t> updated;
  pb::Header forward = f.Request(pb::REPLICATE, 5);  // from node 9 (server 1), sent under view 5
  REQUIRE(router.Plan(forward, keys, later, 0, f.duplicates, &tasks, &updated, &f.skipped).ok());
  // Shard 3 is applied (positions 0 and 2); shard 1 is skipped.
  CHECK(updated == std::vector<uint32_t>{3});
  std::vector<uint32_t> positions;
  for (const ShardTask& t : tasks) positions.insert(positions.end(), t.positions.begin(), t.positions.end());
  std::sort(positions.begin(), positions.end());
  CHECK(positions == std::vector<uint32_t>{0, 2});
  // Under the view it was sent in, this server replicates shard 1: a forward
  // of the current epoch for a shard it does not hold is still refused.
  forward.set_epoch(6);
  CHECK(router.Plan(forward, keys, later, 0, f.duplicates, &tasks, &updated, &f.skipped).code() == absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace sparta::request_router_test
