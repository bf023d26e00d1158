// JobCoordinator, the scheduler's logic without its socket: a whole job
// driven message by message as the event loop drives it (Dispatch, then
// what TakeOutbox() says to send): registration and the first view, a
// refused late registration, barriers, heartbeats, the end of a job
// (workers done -> flush -> shutdown), a worker's failure, a server that
// goes silent (fail-over with replicas, the job's failure without), and the
// operator's requests.
#include "scheduler/job_coordinator.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include <catch2/catch.hpp>

#include "coordinator_rig.h"

namespace sparta::job_coordinator_test {
namespace {

using rig::Clock;
using rig::Find;
using rig::Job;
using rig::Of;
using rig::To;


TEST_CASE("registration: a rank per node, then one view to all, with every shard owned", "[job_coordinator]") {
  Job job;
  auto first = job.Register("s0", pb::SERVER);
  REQUIRE(first.size() == 1);
  CHECK(first[0].routing_id == "s0");
  CHECK(first[0].header.type() == pb::REGISTER_REPLY);
  CHECK(first[0].header.node().rank() == 0);
  CHECK(job.coordinator->BuildStatus(job.t0).phase() == "registering");

  CHECK(job.Register("s1", pb::SERVER).size() == 1);
  CHECK(job.Register("w0", pb::WORKER).size() == 1);
  auto last = job.Register("w1", pb::WORKER);
  CHECK(To(last, pb::REGISTER_REPLY) == std::set<std::string>{"w1"});
  CHECK(To(last, pb::CLUSTER_VIEW) == std::set<std::string>{"s0", "s1", "w0", "w1"});
  const pb::Header* view = Find(last, pb::CLUSTER_VIEW);
  REQUIRE(view != nullptr);
  CHECK(view->view().epoch() == 1);
  CHECK(view->epoch() == 1);
  CHECK(view->view().nodes_size() == 4);
  REQUIRE(view->view().shard_owner_size() == 8);
  std::set<uint32_t> owners(view->view().shard_owner().begin(), view->view().shard_owner().end());
  CHECK(owners == std::set<uint32_t>{0, 1});

  const pb::ClusterStatus status = job.coordinator->BuildStatus(job.t0);
  CHECK(status.phase() == "running");
  CHECK(status.epoch() == 1);
  CHECK(status.nodes_size() == 4);
}

TEST_CASE("a registration after the start is refused, and unregistered peers are dropped", "[job_coordinator]") {
  Job job;
  job.RegisterAll();
  // Without replicas there is nothing a new server could take over.
  auto late = job.Register("s9", pb::SERVER);
  REQUIRE(late.size() == 1);
  CHECK(late[0].header.type() == pb::ABORT);
  CHECK_THAT(late[0].header.error(), Catch::Contains("already started"));

  CHECK(job.Send("stranger", Of(pb::HEARTBEAT)).empty());
  CHECK(job.Send("stranger", Of(pb::WORKER_DONE)).empty());
  CHECK(job.coordinator->BuildStatus(job.t0).dropped_messages() == 2);
  // A message a node's role does not send is dropped too.
  CHECK(job.Send("s0", Of(pb::WORKER_DONE)).empty());
  CHECK(job.coordinator->BuildStatus(job.t0).dropped_messages() == 3);
}

TEST_CASE("heartbeats are echoed with this scheduler's incarnation, status goes to any peer", "[job_coordinator]") {
  Job job;
  job.RegisterAll();
  auto echo = job.Send("w0", Of(pb::HEARTBEAT));
  REQUIRE(echo.size() == 1);
  CHECK(echo[0].header.type() == pb::HEARTBEAT);
  CHECK(echo[0].header.seq() % 2 == 1);  // the incarnation is odd, never 0
  CHECK(echo[0].header.epoch() == 1);
  CHECK(job.Send("s1", Of(pb::HEARTBEAT))[0].header.seq() == echo[0].header.seq());

  auto status = job.Send("sparta-ctl", Of(pb::STATUS_REQUEST));
  REQUIRE(status.size() == 1);
  CHECK(status[0].header.type() == pb::STATUS_REPLY);
  CHECK(status[0].header.cluster_status().nodes_size() == 4);
}

TEST_CASE("a barrier is released to its role once every member arrived", "[job_coordinator]") {
  Job job;
  job.RegisterAll();
  pb::Header barrier = Of(pb::BARRIER);
  barrier.set_barrier("tables");
  CHECK(job.Send("w0", barrier).empty());
  CHECK(job.Send("w0", barrier).empty());  // the same worker twice counts once
  auto released = job.Send("w1", barrier);
  CHECK(To(released, pb::BARRIER_RELEASE) == std::set<std::string>{"w0", "w1"});
  CHECK(Find(released, pb::BARRIER_RELEASE)->barrier() == "tables");
  // The next one with the same name starts over.
  CHECK(job.Send("w1", barrier).empty());
}

TEST_CASE("a barrier's release is saved before it is sent, and one lost with its scheduler is sent again by the next",
          "[job_coordinator]") {
  auto saved = std::make_shared<std::optional<pb::SchedulerState>>();
  const Config config = Job::Sized(1, 2);
  Job job(config, std::make_unique<rig::MemoryStateStore>(saved));
  job.RegisterAll();
  job.coordinator->SaveState(job.t0);
  job.coordinator->TakeOutbox();
  pb::Header barrier = Of(pb::BARRIER);
  barrier.set_barrier("training_done");
  CHECK(job.Send("w0", barrier).empty());
  // Complete, but the release waits for the save that records it: a
  // scheduler taking over from an older save would not know the workers
  // that passed it are past it.
  CHECK(To(job.Send("w1", barrier), pb::BARRIER_RELEASE).empty());
  job.coordinator->SaveState(job.t0);
  auto released = job.coordinator->TakeOutbox();
  REQUIRE(To(released, pb::BARRIER_RELEASE) == std::set<std::string>{"w0", "w1"});
  CHECK(Find(released, pb::BARRIER_RELEASE)->seq() == 1);  // the barrier's first round
  REQUIRE(saved->has_value());
  REQUIRE((*saved)->releases_size() == 1);
  CHECK((*saved)->releases(0).passed_size() == 2);

  // The scheduler dies; w1's release died with it. w1 resends the barrier
  // it still waits for, naming the round it waits for: the next scheduler
  // knows that round was released and lets it pass, with the same lead.
  Job next(config, std::make_unique<rig::MemoryStateStore>(saved));
  barrier.set_resent(true);
  barrier.set_seq(0);  // w1 has passed no release of it
  next.Send("w1", barrier);
  next.coordinator->SaveState(next.t0);
  auto again = next.coordinator->TakeOutbox();
  REQUIRE(To(again, pb::BARRIER_RELEASE) == std::set<std::string>{"w1"});
  CHECK(Find(again, pb::BARRIER_RELEASE)->seq() == 1);
  CHECK(Find(again, pb::BARRIER_RELEASE)->lead_rank() == 0);
  // w0 got its release and now waits at the barrier's next round (it
  // resends that one): it waits for w1 as always.
  barrier.set_seq(1);
  next.Send("w0", barrier);
  next.coordinator->SaveState(next.t0);
  CHECK(To(next.coordinator->TakeOutbox(), pb::BARRIER_RELEASE).empty());
  barrier.set_resent(false);
  next.Send("w1", barrier);
  next.coordinator->SaveState(next.t0);
  auto second = next.coordinator->TakeOutbox();
  REQUIRE(To(second, pb::BARRIER_RELEASE) == std::set<std::string>{"w0", "w1"});
  CHECK(Find(second, pb::BARRIER_RELEASE)->seq() == 2);
}

TEST_CASE("the end: workers done -> servers flush -> every node shut down, with a summary", "[job_coordinator]") {
  Job job;
  job.RegisterAll();
  pb::Header done = Of(pb::WORKER_DONE);
  done.mutable_report()->set_train_examples(1000);
  done.mutable_report()->set_train_seconds(2);
  done.mutable_report()->set_steps(10);
  CHECK(job.Send("w0", done).empty());
  CHECK(job.Send("w0", done).empty());  // resent: counted once
  done.mutable_report()->set_train_examples(3000);
  auto flush = job.Send("w1", done);
  // No storage.path: nothing to checkpoint, the servers flush at once.
  CHECK(To(flush, pb::FLUSH) == std::set<std::string>{"s0", "s1"});
  CHECK(job.coordinator->BuildStatus(job.t0).phase() == "flushing");

  pb::Header flushed = Of(pb::FLUSH_DONE);
  flushed.mutable_server_stats()->set_rows(70);
  CHECK(job.Send("s0", flushed).empty());
  CHECK_FALSE(job.coordinator->done());
  flushed.mutable_server_stats()->set_rows(30);
  auto shutdown = job.Send("s1", flushed);
  CHECK(To(shutdown, pb::SHUTDOWN) == std::set<std::string>{"s0", "s1", "w0", "w1"});
  CHECK(job.coordinator->done());
  CHECK(job.coordinator->outcome().ok());

  const pb::JobSummary summary = job.coordinator->BuildSummary();
  CHECK(summary.status() == "ok");
  CHECK(summary.train_examples() == 4000);
  CHECK(summary.examples_per_sec() == 2000);
  CHECK(summary.server_rows() == 100);
}

TEST_CASE("a worker's failure ends the job with its reason, told to every node", "[job_coordinator]") {
  Job job;
  job.RegisterAll();
  pb::Header failed = Of(pb::WORKER_DONE);
  failed.set_error("bad data in part-3");
  auto abort = job.Send("w1", failed);
  CHECK(To(abort, pb::ABORT) == std::set<std::string>{"s0", "s1", "w0", "w1"});
  CHECK_THAT(Find(abort, pb::ABORT)->error(), Catch::Contains("worker-1") && Catch::Contains("bad data in part-3"));
  CHECK(job.coordinator->done());
  CHECK_FALSE(job.coordinator->outcome().ok());
  CHECK(job.coordinator->BuildSummary().status() == "failed");
}

TEST_CASE("a silent server: with replicas a new view without it, without them the job fails naming the shards",
          "[job_coordinator]") {
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(5.0));
  SECTION("replication 2: fail-over") {
    Job job(/*servers=*/3, /*workers=*/1, /*replication=*/2);
    job.RegisterAll();
    JobCoordinator::Signals signals;
    // Everyone but server 1 keeps talking; the loop checks on time.
    Clock::time_point now = job.t0;
    std::vector<JobCoordinator::Outgoing> out;
    for (int i = 0; i < 8 && To(out, pb::CLUSTER_VIEW).empty(); ++i) {
      now += timeout / 4;
      for (const char* peer : {"s0", "s2", "w0"}) job.Send(peer, Of(pb::HEARTBEAT), now);
      job.coordinator->CheckTimers(now, &signals);
      out = job.coordinator->TakeOutbox();
    }
    CHECK(To(out, pb::CLUSTER_VIEW) == std::set<std::string>{"s0", "s2", "w0"});
    const pb::ClusterView& view = Find(out, pb::CLUSTER_VIEW)->view();
    CHECK(view.epoch() == 2);
    CHECK(std::find(view.dead_servers().begin(), view.dead_servers().end(), 1u) != view.dead_servers().end());
    for (uint32_t owner : view.shard_owner()) CHECK(owner != 1);
    CHECK_FALSE(job.coordinator->done());
    // The dead server, should it speak again, is told to go.
    auto told = job.Send("s1", Of(pb::HEARTBEAT), now);
    REQUIRE(told.size() == 1);
    CHECK(told[0].header.type() == pb::ABORT);
    CHECK_THAT(told[0].header.error(), Catch::Contains("declared dead"));
  }
  SECTION("replication 1: the job fails") {
    Job job(/*servers=*/2, /*workers=*/1, /*replication=*/1);
    job.RegisterAll();
    JobCoordinator::Signals signals;
    Clock::time_point now = job.t0;
    for (int i = 0; i < 8 && !job.coordinator->done(); ++i) {
      now += timeout / 4;
      for (const char* peer : {"s0", "w0"}) job.Send(peer, Of(pb::HEARTBEAT), now);
      job.coordinator->CheckTimers(now, &signals);
    }
    REQUIRE(job.coordinator->done());
    const std::string why(job.coordinator->outcome().message());
    CHECK_THAT(why, Catch::Contains("server-1") && Catch::Contains("stopped responding") &&
                        Catch::Contains("lost every copy") && Catch::Contains("replication_factor is 1"));
    CHECK(To(job.coordinator->TakeOutbox(), pb::ABORT) == std::set<std::string>{"s0", "w0"});
    CHECK(job.coordinator->BuildSummary().lost_shards_size() == 4);
  }
}

// A server's heartbeat: the view it acts on, and the rows of each shard
// (`rows` for those it holds, 0 else), none incomplete.
pb::Header ServerHeartbeat(uint64_t view_epoch, const std::vector<uint64_t>& rows,
                           const std::function<bool(uint32_t shard)>& holds) {
  pb::Header h = Of(pb::HEARTBEAT);
  h.mutable_server_stats()->set_view_epoch(view_epoch);
  for (uint32_t s = 0; s < rows.size(); ++s) h.mutable_server_stats()->add_shard_rows(holds(s) ? rows[s] : 0);
  return h;
}

TEST_CASE("a server that joins gets shards moved to it until it leads its share of the rows", "[job_coordinator]") {
  Job job(/*servers=*/2, /*workers=*/1);
  auto first = job.RegisterAll();
  std::vector<uint32_t> owners(Find(first, pb::CLUSTER_VIEW)->view().shard_owner().begin(),
                               Find(first, pb::CLUSTER_VIEW)->view().shard_owner().end());
  // Server 0's shards hold 3x the rows of server 1's.
  std::vector<uint64_t> rows(8);
  for (uint32_t s = 0; s < 8; ++s) rows[s] = owners[s] == 0 ? 3000 : 1000;
  job.Send("s0", ServerHeartbeat(1, rows, [&](uint32_t s) { return owners[s] == 0; }));
  job.Send("s1", ServerHeartbeat(1, rows, [&](uint32_t s) { return owners[s] == 1; }));

  pb::Header join = Of(pb::REGISTER);
  join.mutable_node()->set_role(pb::SERVER);
  join.mutable_node()->set_rank(-1);
  join.mutable_node()->set_join(true);
  auto joined = job.Send("s2", join);
  const pb::Header* reply = Find(joined, pb::REGISTER_REPLY);
  REQUIRE(reply != nullptr);
  CHECK(reply->node().rank() == 2);  // one past cluster.servers
  const pb::Header* placed = Find(joined, pb::CLUSTER_VIEW);
  REQUIRE(placed != nullptr);
  CHECK(placed->view().epoch() == 2);
  // The copies it is to take join it as catching-up replicas first.
  std::set<uint32_t> incoming;
  for (uint32_t s = 0; s < 8; ++s) {
    const auto& copies = placed->view().replicas(s);
    for (int i = 0; i < copies.ranks_size(); ++i) {
      if (copies.ranks(i) == 2) {
        CHECK(copies.catching_up_from(i) == 2);
        incoming.insert(s);
      }
    }
    CHECK(placed->view().shard_owner(s) == owners[s]);  // no owner changes before the copy is whole
  }
  REQUIRE_FALSE(incoming.empty());
  CHECK(job.coordinator->BuildStatus(job.t0).servers_wanted() == 3);  // a join by hand counts
  CHECK(job.coordinator->BuildStatus(job.t0).shards_moving() == incoming.size());

  // Whole at server 2: the primaries hand off (marked), say so, and switch.
  auto marked = job.Send("s2", ServerHeartbeat(2, rows, [&](uint32_t s) { return incoming.count(s) > 0; }));
  const pb::Header* handing = Find(marked, pb::CLUSTER_VIEW);
  REQUIRE(handing != nullptr);
  for (uint32_t s : incoming) CHECK(handing->view().replicas(s).handing_off());
  for (uint32_t from : {0u, 1u}) {
    pb::Header done = Of(pb::SHARDS_HANDED_OFF);
    done.mutable_server_stats()->set_view_epoch(handing->view().epoch());
    for (uint32_t s : incoming) {
      if (owners[s] == from) done.mutable_server_stats()->add_handed_off(s);
    }
    job.Send(absl::StrCat("s", from), done);
  }
  // Its next heartbeat reports the rows of the shards it now leads.
  job.Send("s2", ServerHeartbeat(4, rows, [&](uint32_t s) { return incoming.count(s) > 0; }));
  const pb::ClusterStatus status = job.coordinator->BuildStatus(job.t0);
  CHECK(status.shards_moving() == 0);
  // 16000 rows over 3 servers: each leads within one big shard of a third.
  std::map<uint32_t, uint64_t> held;
  for (const auto& n : status.nodes()) {
    if (n.info().role() == pb::SERVER) held[n.info().rank()] = n.rows_held();
  }
  REQUIRE(held.size() == 3);
  for (const auto& [rank, rows_there] : held) {
    CHECK(rows_there + 3000 >= 16000 / 3);
    CHECK(rows_there <= 16000 / 3 + 3000);
  }
  CHECK(held[2] > 0);
}

TEST_CASE("a join and a scale need ack all, and scale down drains the highest ranks", "[job_coordinator]") {
  SECTION("storage.ack primary: refused, saying why") {
    Config config = Job::Sized(2, 1);
    config.storage.ack_mode = AckMode::kPrimary;
    Job job(config);
    job.RegisterAll();
    pb::Header join = Of(pb::REGISTER);
    join.mutable_node()->set_role(pb::SERVER);
    join.mutable_node()->set_rank(-1);
    join.mutable_node()->set_join(true);
    auto refused = job.Send("s2", join);
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].header.type() == pb::ABORT);
    CHECK_THAT(refused[0].header.error(), Catch::Contains("storage.ack: all"));
    pb::Header scale = Of(pb::SCALE_REQUEST);
    scale.set_scale_servers(3);
    auto answer = job.Send("ctl", scale);
    REQUIRE(answer.size() == 1);
    CHECK(answer[0].header.status() == static_cast<int>(absl::StatusCode::kFailedPrecondition));
  }
  SECTION("scale 3 -> 2 drains server-2; fewer than one copy's worth is refused") {
    Job job(/*servers=*/3, /*workers=*/1);
    job.RegisterAll();
    pb::Header scale = Of(pb::SCALE_REQUEST);
    scale.set_scale_servers(0);
    auto zero = job.Send("ctl", scale);
    REQUIRE(Find(zero, pb::RESPONSE) != nullptr);
    CHECK(Find(zero, pb::RESPONSE)->status() == static_cast<int>(absl::StatusCode::kInvalidArgument));
    scale.set_scale_servers(2);
    auto down = job.Send("ctl", scale);
    const pb::Header* answer = Find(down, pb::RESPONSE);
    REQUIRE(answer != nullptr);
    CHECK(answer->status() == 0);
    CHECK_THAT(answer->error(), Catch::Contains("draining server-2"));
    CHECK(answer->scale_servers() == 0);  // none to start
    const pb::Header* view = Find(down, pb::CLUSTER_VIEW);
    REQUIRE(view != nullptr);
    int moving_from_2 = 0;
    for (uint32_t s = 0; s < 8; ++s) {
      if (view->view().shard_owner(s) != 2) continue;
      ++moving_from_2;
      CHECK(view->view().replicas(s).ranks_size() == 1);  // its new home, catching up
    }
    CHECK(moving_from_2 > 0);
    const pb::ClusterStatus status = job.coordinator->BuildStatus(job.t0);
    CHECK(status.servers_wanted() == 2);
    CHECK(status.shards_moving() == static_cast<uint32_t>(moving_from_2));
    // Scaling up again waits for servers started with --join.
    scale.set_scale_servers(4);
    auto up = job.Send("ctl", scale);
    REQUIRE(Find(up, pb::RESPONSE) != nullptr);
    CHECK(Find(up, pb::RESPONSE)->status() == 0);
    CHECK_THAT(Find(up, pb::RESPONSE)->error(), Catch::Contains("--join"));
    // Server-2 is draining: it does not count, so two are to start, not one.
    CHECK(Find(up, pb::RESPONSE)->scale_servers() == 2);
    CHECK(job.coordinator->BuildStatus(job.t0).servers_wanted() == 4);
  }
}

TEST_CASE("a scheduler that takes over goes on with a drain: the saved view, its moves, the server's exit",
          "[job_coordinator]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("sparta-takeover-", getpid());
  fs::remove_all(dir);
  Config config = Job::Sized(/*servers=*/3, /*workers=*/1);
  config.storage.path = dir.string();
  std::set<uint32_t> leaving;  // shards server-2 leads
  uint64_t published = 0;
  {
    Job first(config);
    first.RegisterAll();
    pb::Header scale = Of(pb::SCALE_REQUEST);
    scale.set_scale_servers(2);
    auto down = first.Send("ctl", scale);
    const pb::Header* view = Find(down, pb::CLUSTER_VIEW);
    REQUIRE(view != nullptr);
    published = view->view().epoch();
    for (uint32_t s = 0; s < 8; ++s) {
      if (view->view().shard_owner(s) == 2) leaving.insert(s);
    }
    REQUIRE_FALSE(leaving.empty());
    // No SaveState() here: a view is saved before it is sent, so a
    // scheduler that dies right after never numbers another view the same.
  }
  Job second(config);
  pb::ClusterStatus status = second.coordinator->BuildStatus(second.t0);
  CHECK(status.epoch() == published);
  CHECK(status.shards_moving() == leaving.size());
  CHECK(status.servers_wanted() == 2);
  // The targets report the shards whole: the primaries hand off...
  const std::vector<uint64_t> rows(8, 0);
  std::vector<JobCoordinator::Outgoing> out;
  for (const char* target : {"s0", "s1"}) {
    auto sent = second.Send(target, ServerHeartbeat(published, rows, [](uint32_t) { return true; }));
    out.insert(out.end(), sent.begin(), sent.end());
  }
  const pb::Header* handing = nullptr;
  for (const auto& o : out) {
    if (o.header.type() == pb::CLUSTER_VIEW) handing = &o.header;
  }
  REQUIRE(handing != nullptr);
  CHECK(handing->view().epoch() > published);
  for (uint32_t s : leaving) CHECK(handing->view().replicas(s).handing_off());
  // ...say so, switch, and the drained server, holding nothing, is let go.
  pb::Header done = Of(pb::SHARDS_HANDED_OFF);
  done.mutable_server_stats()->set_view_epoch(handing->view().epoch());
  for (uint32_t s : leaving) done.mutable_server_stats()->add_handed_off(s);
  auto switched = second.Send("s2", done);
  CHECK(To(switched, pb::SHUTDOWN) == std::set<std::string>{"s2"});
  status = second.coordinator->BuildStatus(second.t0);
  CHECK(status.shards_moving() == 0);
  fs::remove_all(dir);
}

TEST_CASE("a drained server's copies whose target died move again, to servers that stay", "[job_coordinator]") {
  Job job(/*servers=*/4, /*workers=*/1, /*replication=*/2);
  job.RegisterAll();
  pb::Header drain = Of(pb::DRAIN_REQUEST);
  drain.mutable_node()->set_role(pb::SERVER);
  drain.mutable_node()->set_rank(3);
  auto begun = job.Send("ctl", drain);
  REQUIRE(Find(begun, pb::RESPONSE) != nullptr);
  REQUIRE(Find(begun, pb::RESPONSE)->status() == 0);
  const pb::ClusterView& first = Find(begun, pb::CLUSTER_VIEW)->view();
  bool some_to_0 = false;  // a copy of server 3 was moving to server 0
  for (uint32_t s = 0; s < 8; ++s) {
    const auto& copies = first.replicas(s);
    for (int i = 0; i < copies.ranks_size(); ++i) some_to_0 |= copies.ranks(i) == 0 && copies.catching_up_from(i) != 0;
  }
  REQUIRE(some_to_0);
  // Server 0 goes silent: it fails over, and its moves end with it.
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(5.0));
  JobCoordinator::Signals signals;
  Clock::time_point now = job.t0;
  std::vector<JobCoordinator::Outgoing> out;
  for (int i = 0; i < 8 && To(out, pb::CLUSTER_VIEW).empty(); ++i) {
    now += timeout / 4;
    for (const char* peer : {"s1", "s2", "s3", "w0"}) job.Send(peer, Of(pb::HEARTBEAT), now);
    job.coordinator->CheckTimers(now, &signals);
    out = job.coordinator->TakeOutbox();
  }
  const pb::Header* after = Find(out, pb::CLUSTER_VIEW);
  REQUIRE(after != nullptr);
  // Every copy server 3 still holds is on its way to server 1 or 2 (a
  // catching-up copy there), none to 3 or the dead server 0.
  int held = 0;
  for (uint32_t s = 0; s < 8; ++s) {
    const auto& copies = after->view().replicas(s);
    bool on_3 = after->view().shard_owner(s) == 3, arriving = false;
    for (int i = 0; i < copies.ranks_size(); ++i) {
      on_3 |= copies.ranks(i) == 3;
      if (copies.catching_up_from(i) != 0) {
        CHECK((copies.ranks(i) == 1 || copies.ranks(i) == 2));
        arriving = true;
      }
    }
    CHECK(after->view().shard_owner(s) != 0);
    if (!on_3) continue;
    ++held;
    CHECK(arriving);
  }
  CHECK(held > 0);
  CHECK(job.coordinator->BuildStatus(now).shards_moving() == static_cast<uint32_t>(held));
}

TEST_CASE("a server that joins or replaces while another drains takes the short copies, the drained one none",
          "[job_coordinator]") {
  Job job(/*servers=*/3, /*workers=*/1, /*replication=*/2);
  job.RegisterAll();
  pb::Header drain = Of(pb::DRAIN_REQUEST);
  drain.mutable_node()->set_role(pb::SERVER);
  drain.mutable_node()->set_rank(2);
  auto begun = job.Send("ctl", drain);
  const pb::Header* moving = Find(begun, pb::CLUSTER_VIEW);
  REQUIRE(moving != nullptr);
  const pb::ClusterView first = moving->view();
  // One replica copy of server 2 stays unfinished; every other copy of it
  // becomes whole at its target, so server 2 ends up holding just that one.
  uint32_t unfinished = UINT32_MAX;
  std::set<uint32_t> led_by_2;
  for (uint32_t s = 0; s < 8; ++s) {
    if (first.shard_owner(s) == 2) led_by_2.insert(s);
    const auto& copies = first.replicas(s);
    for (int i = 0; i < copies.ranks_size(); ++i) {
      if (copies.ranks(i) == 2 && unfinished == UINT32_MAX) unfinished = s;
    }
  }
  REQUIRE(unfinished != UINT32_MAX);
  REQUIRE_FALSE(led_by_2.empty());
  std::vector<JobCoordinator::Outgoing> out;
  for (const char* target : {"s0", "s1"}) {
    pb::Header h = ServerHeartbeat(first.epoch(), std::vector<uint64_t>(8, 0), [](uint32_t) { return true; });
    h.mutable_server_stats()->add_incomplete_shards(unfinished);
    auto sent = job.Send(target, h);
    out.insert(out.end(), sent.begin(), sent.end());
  }
  const pb::Header* handing = nullptr;
  for (const auto& o : out) {
    if (o.header.type() == pb::CLUSTER_VIEW) handing = &o.header;
  }
  REQUIRE(handing != nullptr);
  pb::Header done = Of(pb::SHARDS_HANDED_OFF);
  done.mutable_server_stats()->set_view_epoch(handing->view().epoch());
  for (uint32_t s : led_by_2) done.mutable_server_stats()->add_handed_off(s);
  job.Send("s2", done);
  // Server 1 goes silent: every shard but one is left with a single copy,
  // on server 0 (server 2 is leaving, so it takes none).
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(5.0));
  JobCoordinator::Signals signals;
  Clock::time_point now = job.t0;
  out.clear();
  for (int i = 0; i < 8 && To(out, pb::CLUSTER_VIEW).empty(); ++i) {
    now += timeout / 4;
    for (const char* peer : {"s0", "s2", "w0"}) job.Send(peer, Of(pb::HEARTBEAT), now);
    job.coordinator->CheckTimers(now, &signals);
    out = job.coordinator->TakeOutbox();
  }
  REQUIRE(Find(out, pb::CLUSTER_VIEW) != nullptr);
  // A server joins: the short copies go to it, none to server 2.
  pb::Header join = Of(pb::REGISTER);
  join.mutable_node()->set_role(pb::SERVER);
  join.mutable_node()->set_rank(-1);
  // --join, or a plain restart taking the dead server's rank (a replacement).
  join.mutable_node()->set_join(GENERATE(true, false));
  auto joined = job.Send("s3", join, now);
  REQUIRE(Find(joined, pb::REGISTER_REPLY) != nullptr);
  const uint32_t rank = static_cast<uint32_t>(Find(joined, pb::REGISTER_REPLY)->node().rank());
  const pb::Header* placed = Find(joined, pb::CLUSTER_VIEW);
  REQUIRE(placed != nullptr);
  int on_2 = 0, on_new = 0;
  for (uint32_t s = 0; s < 8; ++s) {
    const auto& copies = placed->view().replicas(s);
    on_2 += placed->view().shard_owner(s) == 2;
    on_new += placed->view().shard_owner(s) == rank;
    for (int i = 0; i < copies.ranks_size(); ++i) {
      on_2 += copies.ranks(i) == 2;
      on_new += copies.ranks(i) == rank;
    }
  }
  CHECK(on_2 <= 1);  // at most the copy it had not handed on yet
  CHECK(on_new >= 6);
}

TEST_CASE("a stalled scheduler loop blames no node", "[job_coordinator]") {
  Job job;
  job.RegisterAll();
  JobCoordinator::Signals signals;
  // One turn of the loop an hour late: silence is not judged on it.
  job.coordinator->CheckTimers(job.t0 + std::chrono::hours(1), &signals);
  CHECK_FALSE(job.coordinator->done());
  CHECK(job.coordinator->TakeOutbox().empty());
}

TEST_CASE("operator stop and SIGTERM end the job as stopped and preempted", "[job_coordinator]") {
  SECTION("stop") {
    Job job;
    job.RegisterAll();
    // What the heartbeats said before the stop is what the summary says:
    // a stopped job flushes no stats and sends no final reports.
    for (int s = 0; s < 2; ++s) {
      pb::Header beat = Of(pb::HEARTBEAT);
      beat.mutable_server_stats()->set_rows(100 + s);
      job.Send(absl::StrCat("s", s), beat);
    }
    pb::Header beat = Of(pb::HEARTBEAT);
    beat.mutable_progress()->set_examples(5000);
    job.Send("w0", beat);
    auto answer = job.Send("ctl", Of(pb::STOP_REQUEST));
    CHECK(To(answer, pb::RESPONSE) == std::set<std::string>{"ctl"});
    CHECK(To(answer, pb::SHUTDOWN) == std::set<std::string>{"s0", "s1", "w0", "w1"});
    const pb::JobSummary summary = job.coordinator->BuildSummary();
    CHECK(summary.status() == "stopped");
    CHECK(summary.server_rows() == 201);
    CHECK(summary.train_examples() == 5000);
    CHECK(summary.train_seconds() > 0);
    CHECK(summary.examples_per_sec() == Approx(5000 / summary.train_seconds()));
    auto again = job.Send("ctl", Of(pb::STOP_REQUEST));
    REQUIRE(again.size() == 1);
    CHECK(again[0].header.status() != 0);
  }
  SECTION("SIGTERM") {
    Job job;
    job.RegisterAll();
    JobCoordinator::Signals signals{.terminate = true};
    job.coordinator->CheckTimers(job.t0, &signals);
    CHECK_FALSE(signals.terminate);  // consumed
    CHECK(To(job.coordinator->TakeOutbox(), pb::SHUTDOWN).size() == 4);
    CHECK(job.coordinator->BuildSummary().status() == "preempted");
  }
  SECTION("a checkpoint asked for without storage.path is refused, with the reason") {
    Job job;
    job.RegisterAll();
    auto answer = job.Send("ctl", Of(pb::CHECKPOINT_REQUEST));
    REQUIRE(answer.size() == 1);
    CHECK(answer[0].header.status() != 0);
    CHECK_THAT(answer[0].header.error(), Catch::Contains("storage.path"));
  }
}

// Counts the saves; holds nothing.
class CountingStateStore : public StateStore {
 public:
  explicit CountingStateStore(int* saves) : saves_(saves) {}
  absl::Status Save(const pb::SchedulerState&) override {
    ++*saves_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<pb::SchedulerState>> Load() override { return std::nullopt; }
  std::string where() const override { return "memory"; }

 private:
  int* saves_;
};

TEST_CASE("a view is saved once, before it is sent, and still reported to the loop as news", "[job_coordinator]") {
  int saves = 0;
  Job job(Job::Sized(2, 1), std::make_unique<CountingStateStore>(&saves));
  job.RegisterAll();
  CHECK(saves == 1);
  // The loop's next turn: /metrics is due, the store is not written again.
  CHECK(job.coordinator->SaveState(job.t0));
  CHECK(saves == 1);
  CHECK_FALSE(job.coordinator->SaveState(job.t0));
  // A second later it is re-saved, its age telling a successor the nodes may still wait.
  CHECK_FALSE(job.coordinator->SaveState(Clock::now() + std::chrono::seconds(2)));
  CHECK(saves == 2);
}

TEST_CASE("SaveState reports a change of members once", "[job_coordinator]") {
  Job job;
  CHECK_FALSE(job.coordinator->SaveState(job.t0));
  job.Register("s0", pb::SERVER);
  CHECK(job.coordinator->SaveState(job.t0));
  CHECK_FALSE(job.coordinator->SaveState(job.t0));
  job.Send("s0", Of(pb::HEARTBEAT));
  CHECK_FALSE(job.coordinator->SaveState(job.t0));
}

}  // namespace
}  // namespace sparta::job_coordinator_test

namespace sparta::job_coordinator_test {
namespace {

TEST_CASE("a server whose heartbeats name an older view for a second gets the current one again",
          "[job_coordinator]") {
  rig::Job job(/*servers=*/3, /*workers=*/1);
  job.RegisterAll();  // view epoch 1
  pb::Header beat = rig::Of(pb::HEARTBEAT);
  auto views = [](const std::vector<JobCoordinator::Outgoing>& out) {
    int n = 0;
    for (const auto& o : out) n += o.header.type() == pb::CLUSTER_VIEW;
    return n;
  };
  // Up to date: only the echo.
  beat.mutable_server_stats()->set_view_epoch(1);
  CHECK(views(job.Send("s0", beat)) == 0);
  // A newer view is published (a server drains), and s1 says it is still
  // at epoch 1, as a server that missed it does.
  pb::Header drain = rig::Of(pb::DRAIN_REQUEST);
  drain.mutable_node()->set_role(pb::SERVER);
  drain.mutable_node()->set_rank(2);
  REQUIRE(views(job.Send("ctl", drain)) > 0);  // to every node
  beat.mutable_server_stats()->set_view_epoch(1);
  const auto t = rig::Clock::now();
  // Behind for a moment: the view may be on its way.
  CHECK(views(job.Send("s1", beat, t)) == 0);
  CHECK(views(job.Send("s1", beat, t + std::chrono::milliseconds(500))) == 0);
  // Behind for a second: sent again.
  auto out = job.Send("s1", beat, t + std::chrono::milliseconds(1100));
  REQUIRE(views(out) == 1);
  for (const auto& o : out) {
    if (o.header.type() == pb::CLUSTER_VIEW) CHECK(o.header.view().epoch() > 1);
  }
  CHECK(views(job.Send("s1", beat, t + std::chrono::milliseconds(1500))) == 0);  // not again at once
  CHECK(views(job.Send("s1", beat, t + std::chrono::milliseconds(2200))) == 1);
  // A heartbeat with no view yet (a server still joining) gets none.
  beat.mutable_server_stats()->set_view_epoch(0);
  CHECK(views(job.Send("s0", beat, t + std::chrono::seconds(5))) == 0);
}

TEST_CASE("a serving cluster: front-ends come and go, workers are refused, SIGTERM ends it without a checkpoint",
          "[job_coordinator]") {
  Config c = Job::Sized(/*servers=*/2, /*workers=*/0, /*replication=*/2);
  c.serving.cluster = true;
  c.storage.path = "/nonexistent/the-training-jobs-store";  // read (serving.model), never written
  Job job(c);
  // A front-end before the servers: registered, and the first view reaches it.
  auto early = job.Register("f0", pb::SERVING);
  REQUIRE(Find(early, pb::REGISTER_REPLY) != nullptr);
  CHECK(Find(early, pb::REGISTER_REPLY)->node().rank() == 0);
  CHECK(Find(early, pb::CLUSTER_VIEW) == nullptr);
  job.Register("s0", pb::SERVER);
  auto first = job.Register("s1", pb::SERVER);
  CHECK(To(first, pb::CLUSTER_VIEW) == std::set<std::string>{"s0", "s1", "f0"});
  // One that comes later gets the current view at once.
  auto late = job.Register("f1", pb::SERVING);
  CHECK(Find(late, pb::REGISTER_REPLY)->node().rank() == 1);
  REQUIRE(Find(late, pb::CLUSTER_VIEW) != nullptr);
  CHECK(Find(late, pb::CLUSTER_VIEW)->view().epoch() == 1);
  // No worker: there is nothing to train.
  auto worker = job.Register("w0", pb::WORKER);
  REQUIRE(Find(worker, pb::ABORT) != nullptr);
  CHECK_THAT(Find(worker, pb::ABORT)->error(), Catch::Contains("takes no workers"));
  // A silent front-end is let go; the cluster serves on.
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(5.0));
  JobCoordinator::Signals signals;
  Clock::time_point now = job.t0;
  for (int i = 0; i < 8; ++i) {
    now += timeout / 4;
    for (const char* peer : {"s0", "s1", "f1"}) job.Send(peer, Of(pb::HEARTBEAT), now);
    job.coordinator->CheckTimers(now, &signals);
  }
  job.coordinator->TakeOutbox();
  CHECK_FALSE(job.coordinator->done());
  // One started again under rank 1 (its old process gone unnoticed) takes it over.
  pb::Header again;
  again.set_type(pb::REGISTER);
  again.mutable_node()->set_role(pb::SERVING);
  again.mutable_node()->set_rank(1);
  auto restarted = job.Send("f1-again", again, now);
  REQUIRE(Find(restarted, pb::REGISTER_REPLY) != nullptr);
  CHECK(Find(restarted, pb::REGISTER_REPLY)->node().rank() == 1);
  CHECK(To(job.Send("f1", Of(pb::HEARTBEAT), now), pb::ABORT) == std::set<std::string>{"f1"});
  // A front-end's SIGTERM lets it alone go.
  auto third = job.Register("f2", pb::SERVING);
  REQUIRE(Find(third, pb::REGISTER_REPLY) != nullptr);
  CHECK(To(job.Send("f2", Of(pb::PREEMPT), now), pb::SHUTDOWN) == std::set<std::string>{"f2"});
  CHECK_FALSE(job.coordinator->done());
  signals.terminate = true;
  job.coordinator->CheckTimers(now, &signals);
  CHECK(job.coordinator->done());
  CHECK(job.coordinator->outcome().ok());
  auto out = job.coordinator->TakeOutbox();
  CHECK(To(out, pb::SHUTDOWN) == std::set<std::string>{"s0", "s1", "f1-again"});
  CHECK(To(out, pb::CHECKPOINT).empty());
}

TEST_CASE("a training job's scheduler refuses a serving front-end", "[job_coordinator]") {
  Job job(2, 1);
  auto refused = job.Register("f0", pb::SERVING);
  REQUIRE(Find(refused, pb::ABORT) != nullptr);
  CHECK_THAT(Find(refused, pb::ABORT)->error(), Catch::Contains("serving cluster"));
}

}  // namespace
}  // namespace sparta::job_coordinator_test
