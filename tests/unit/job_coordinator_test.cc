// JobCoordinator, the scheduler's logic without its socket: a whole job
// driven message by message as the event loop drives it (Dispatch, then
// what TakeOutbox() says to send): registration and the first view, a
// refused late registration, barriers, heartbeats, the end of a job
// (workers done -> flush -> shutdown), a worker's failure, a server that
// goes silent (fail-over with replicas, the job's failure without), and the
// operator's requests.
#include "scheduler/job_coordinator.h"

#include <algorithm>
#include <map>
#include <set>

#include <catch2/catch.hpp>

#include "coordinator_rig.h"

namespace sparta {
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
    auto answer = job.Send("ctl", Of(pb::STOP_REQUEST));
    CHECK(To(answer, pb::RESPONSE) == std::set<std::string>{"ctl"});
    CHECK(To(answer, pb::SHUTDOWN) == std::set<std::string>{"s0", "s1", "w0", "w1"});
    CHECK(job.coordinator->BuildSummary().status() == "stopped");
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
}  // namespace sparta
