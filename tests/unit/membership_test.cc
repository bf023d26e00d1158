// Membership, the scheduler's table of nodes: ids unique per job, ranks
// dense per role (requested ones honoured when free, a dead node's rank free
// again), the errors that name why a registration is refused, silence
// detection, and what a start-up timeout says is missing.
#include "scheduler/membership.h"

#include <catch2/catch.hpp>

namespace sparta::membership_test {
namespace {

using Clock = Membership::Clock;

pb::NodeInfo Asking(pb::Role role, int rank = -1) {
  pb::NodeInfo info;
  info.set_role(role);
  info.set_rank(rank);
  info.set_host("127.0.0.1");
  return info;
}

TEST_CASE("ranks are dense per role, ids unique, and requested ranks honoured when free", "[membership]") {
  Membership m(/*servers=*/3, /*workers=*/2);
  const auto t0 = Clock::now();
  auto s1 = m.Add(Asking(pb::SERVER, 1), "a", t0);
  auto s_any = m.Add(Asking(pb::SERVER), "b", t0);
  auto w = m.Add(Asking(pb::WORKER), "c", t0);
  REQUIRE(s1.ok());
  REQUIRE(s_any.ok());
  REQUIRE(w.ok());
  CHECK(s1->rank() == 1);
  CHECK(s_any->rank() == 0);  // the lowest free rank
  CHECK(w->rank() == 0);      // ranks count per role
  CHECK(s1->id() != s_any->id());
  CHECK(s_any->id() != w->id());
  CHECK(s1->id() != 0);  // id 0 is the scheduler's
  CHECK(m.joined(pb::SERVER) == 2);
  CHECK_FALSE(m.complete());
  CHECK(m.DescribeMissing() == "server ranks 2; worker ranks 1");

  auto taken = m.Add(Asking(pb::SERVER, 1), "d", t0);
  CHECK(taken.status().code() == absl::StatusCode::kAlreadyExists);
  auto out_of_range = m.Add(Asking(pb::WORKER, 2), "e", t0);
  CHECK(out_of_range.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(out_of_range.status().message()), Catch::Contains("out of range"));
  auto bad_role = m.Add(Asking(pb::SCHEDULER), "f", t0);
  CHECK(bad_role.status().code() == absl::StatusCode::kInvalidArgument);

  REQUIRE(m.Add(Asking(pb::SERVER), "g", t0).ok());
  REQUIRE(m.Add(Asking(pb::WORKER), "h", t0).ok());
  CHECK(m.complete());
  CHECK(m.DescribeMissing().empty());
  CHECK(m.Add(Asking(pb::WORKER), "i", t0).status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(m.LiveServers() == std::vector<uint32_t>{0, 1, 2});
}

TEST_CASE("a dead node's rank is free again, under a new id", "[membership]") {
  Membership m(2, 1);
  const auto t0 = Clock::now();
  auto first = m.Add(Asking(pb::SERVER, 1), "old", t0);
  REQUIRE(m.Add(Asking(pb::SERVER, 0), "other", t0).ok());
  REQUIRE(first.ok());
  Membership::Node* node = m.FindByRoutingId("old");
  REQUIRE(node != nullptr);
  node->dead = true;
  CHECK(m.LiveServers() == std::vector<uint32_t>{0});
  CHECK(m.DescribeMissing() == "server ranks 1; worker ranks 0");
  auto again = m.Add(Asking(pb::SERVER, 1), "new", t0);
  REQUIRE(again.ok());
  CHECK(again->rank() == 1);
  CHECK(again->id() != first->id());
  CHECK(m.FindByRoutingId("new")->info.id() == again->id());
  CHECK(m.FindByRoutingId("nobody") == nullptr);
}

TEST_CASE("the first live node silent for longer than the timeout is found", "[membership]") {
  Membership m(2, 1);
  const auto t0 = Clock::now();
  REQUIRE(m.Add(Asking(pb::SERVER), "s0", t0).ok());
  REQUIRE(m.Add(Asking(pb::SERVER), "s1", t0 + std::chrono::seconds(2)).ok());
  REQUIRE(m.Add(Asking(pb::WORKER), "w0", t0 + std::chrono::seconds(2)).ok());
  const auto timeout = std::chrono::seconds(5);
  CHECK(m.FindSilent(t0 + std::chrono::seconds(5), timeout) == nullptr);  // not longer than the timeout yet
  Membership::Node* silent = m.FindSilent(t0 + std::chrono::seconds(6), timeout);
  REQUIRE(silent != nullptr);
  CHECK(silent->routing_id == "s0");
  // A dead node is not reported again; the others are silent later.
  silent->dead = true;
  CHECK(m.FindSilent(t0 + std::chrono::seconds(6), timeout) == nullptr);
  m.FindByRoutingId("w0")->last_seen = t0 + std::chrono::seconds(8);
  silent = m.FindSilent(t0 + std::chrono::seconds(8), timeout);
  REQUIRE(silent != nullptr);
  CHECK(silent->routing_id == "s1");
}

TEST_CASE("a restarted scheduler restores nodes as they were, the dead ones dead", "[membership]") {
  Membership m(2, 1);
  const auto t0 = Clock::now();
  pb::NodeInfo s0 = Asking(pb::SERVER, 0);
  s0.set_id(4);
  pb::NodeInfo s1 = Asking(pb::SERVER, 1);
  s1.set_id(2);
  m.Restore(s0, "r0", /*dead=*/false, t0);
  m.Restore(s1, "r1", /*dead=*/true, t0);
  CHECK(m.FindByRoutingId("r0")->info.id() == 4);
  CHECK(m.LiveServers() == std::vector<uint32_t>{0});
  // Rank 1's server died: a fresh one takes the rank.
  auto fresh = m.Add(Asking(pb::SERVER, 1), "r2", t0);
  REQUIRE(fresh.ok());
  CHECK(fresh->rank() == 1);
  CHECK(fresh->id() != 4);
  CHECK(fresh->id() != 2);
  CHECK(DescribeNode(*fresh).rfind("server-1 (id ", 0) == 0);
}

TEST_CASE("a server that joins with no free rank grows the job by one, and so does a restored one past the count too",
          "[membership]") {
  Membership m(2, 1);
  const auto t0 = Clock::now();
  REQUIRE(m.Add(Asking(pb::SERVER), "s0", t0).ok());
  REQUIRE(m.Add(Asking(pb::SERVER), "s1", t0).ok());
  // Without --join a full role refuses.
  CHECK(m.Add(Asking(pb::SERVER), "x", t0).status().code() == absl::StatusCode::kResourceExhausted);
  pb::NodeInfo joining = Asking(pb::SERVER);
  joining.set_join(true);
  auto joined = m.Add(joining, "s2", t0);
  REQUIRE(joined.ok());
  CHECK(joined->rank() == 2);
  CHECK(m.expected(pb::SERVER) == 3);
  CHECK(m.LiveServers() == std::vector<uint32_t>{0, 1, 2});
  CHECK(m.expected(pb::WORKER) == 1);
  // A pod of a scaled-up StatefulSet joins under its ordinal: the job grows to it.
  pb::NodeInfo pod = Asking(pb::SERVER, 5);
  pod.set_join(true);
  auto ordinal = m.Add(pod, "s5", t0);
  REQUIRE(ordinal.ok());
  CHECK(ordinal->rank() == 5);
  CHECK(m.expected(pb::SERVER) == 6);
  CHECK(m.LiveServers() == std::vector<uint32_t>{0, 1, 2, 5});
  // Without --join, past the count is still out of range.
  CHECK(m.Add(Asking(pb::SERVER, 9), "s9", t0).status().code() == absl::StatusCode::kInvalidArgument);

  // A restarted scheduler restores it: rank 2 is within the job again.
  Membership restored(2, 1);
  restored.Restore(*joined, "s2", /*dead=*/false, t0);
  CHECK(restored.expected(pb::SERVER) == 3);
  CHECK(restored.DescribeMissing() == "server ranks 0, 1; worker ranks 0");
}

}  // namespace
}  // namespace sparta::membership_test
