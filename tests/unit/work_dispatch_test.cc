// Work handed out on demand (data.assignment: on_demand), without sockets:
// the scheduler's WorkDispatcher (grants, held requests, a lost worker's
// units back to the pool, its state for a restarted scheduler), a worker's
// WorkFeed and DataLoader reading granted units from real files (a batch
// never spans two units; a unit is reported done only once all its batches
// are acknowledged), and the JobCoordinator going on when a worker dies.
#include "scheduler/work_dispatcher.h"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "scheduler/job_coordinator.h"
#include "coordinator_rig.h"
#include "worker/data/data_loader.h"
#include "worker/data/readers.h"
#include "worker/work_feed.h"

namespace sparta::work_dispatch_test {
namespace {

namespace fs = std::filesystem;
using rig::Clock;
using rig::Of;
using rig::To;

// Two libsvm files of "1 ID:1" lines, IDs 0..(2 * lines - 1).
struct Inputs {
  fs::path dir;
  std::vector<WorkPool::InputFile> files;
  explicit Inputs(int lines = 300) {
    char tmpl[] = "/tmp/sparta-dispatch-XXXXXX";
    dir = mkdtemp(tmpl);
    int next = 0;
    for (int f = 0; f < 2; ++f) {
      std::string text;
      for (int i = 0; i < lines; ++i) text += "1 " + std::to_string(next++) + ":1\n";
      const fs::path path = dir / ("part" + std::to_string(f));
      std::ofstream(path) << text;
      files.push_back({path.string(), text.size()});
    }
  }
  ~Inputs() { fs::remove_all(dir); }
};

// A job of 1 server and 2 workers on `in`, with data.assignment on_demand.
Config OnDemand(const Inputs& in) {
  Config config = rig::Job::Sized(/*servers=*/1, /*workers=*/2);
  config.data.train = {in.files[0].path, in.files[1].path};
  config.data.assignment = "on_demand";
  config.data.assignment_mode = Assignment::kOnDemand;
  return config;
}

WorkDispatcher Dispatcher(const Inputs& in, uint64_t split, uint32_t epochs = 1) {
  auto pool = WorkPool::Cut(in.files, split, epochs);
  REQUIRE(pool.ok());
  return WorkDispatcher(*std::move(pool));
}

TEST_CASE("dispatcher: grants in order, holds a request while units are in flight, answers it when one comes back",
          "[work_dispatch]") {
  Inputs in;
  WorkDispatcher d = Dispatcher(in, 0);  // two whole files
  d.OnRequest(1, "w1");
  d.OnRequest(2, "w2");
  auto out = d.TakeOutbox();
  REQUIRE(out.size() == 2);
  CHECK(out[0].routing_id == "w1");
  CHECK(out[0].header.type() == pb::WORK_GRANT);
  CHECK(out[0].header.work().path() == in.files[0].path);
  CHECK(out[1].header.work().path() == in.files[1].path);
  const uint64_t held_by_2 = out[1].header.work().id();

  // Nothing left, but worker 2's unit may come back: worker 1 waits.
  d.OnDone(1, out[0].header.work().id());
  d.OnRequest(1, "w1");
  CHECK(d.TakeOutbox().empty());
  CHECK(d.waiting() == 1);

  // A report for a unit that is not the worker's changes nothing.
  d.OnDone(1, held_by_2);
  CHECK(d.TakeOutbox().empty());

  // Worker 2 had trained its first 1000 bytes, and taken 120 examples more.
  pb::WorkerProgress last;
  (*last.mutable_units())[held_by_2].set_trained_bytes(1000);
  (*last.mutable_units())[held_by_2].set_taken_examples(120);
  CHECK(d.OnLost(2, last) == 1);
  out = d.TakeOutbox();
  REQUIRE(out.size() == 1);
  CHECK(out[0].routing_id == "w1");
  CHECK(out[0].header.work().id() == held_by_2);
  CHECK(out[0].header.work().begin() == 1000);  // what is left of it
  CHECK(out[0].header.work().end() == in.files[1].size);
  CHECK(d.examples_retrained() == 120);
  CHECK(d.units_released() == 1);

  // The dead worker's late report is ignored; the new holder's counts.
  d.OnDone(2, held_by_2);
  CHECK_FALSE(d.finished());
  d.OnDone(1, held_by_2);
  CHECK(d.finished());
  CHECK(d.units_done() == 2);
  d.OnRequest(1, "w1");
  out = d.TakeOutbox();
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].header.has_work());  // every unit is done
}

// A scheduler that took over from one that had granted worker 1 its first
// unit (`*unit`): that unit is in flight to it.
WorkDispatcher TakenOverWithAUnitInFlight(const Inputs& in, uint64_t* unit) {
  WorkDispatcher d = Dispatcher(in, 0);
  d.OnRequest(1, "w1");
  *unit = d.TakeOutbox()[0].header.work().id();
  return WorkDispatcher::FromState(d.ToState());
}

TEST_CASE("dispatcher: a unit granted but never received is granted again to the worker that asks without it",
          "[work_dispatch]") {
  Inputs in;
  uint64_t lost = 0;
  WorkDispatcher again = TakenOverWithAUnitInFlight(in, &lost);
  // Worker 1's request, resent to the new scheduler, says it holds nothing:
  // the grant never reached it.
  const std::vector<uint64_t> nothing;
  again.OnRequest(1, "w1", &nothing, /*resent=*/true);
  auto out = again.TakeOutbox();
  REQUIRE(out.size() == 1);
  CHECK(out[0].header.work().id() == lost);
  CHECK(again.pool().in_flight() == 1);
  // Holding it, the worker gets the next one.
  const std::vector<uint64_t> holding{lost};
  again.OnRequest(1, "w1", &holding);
  out = again.TakeOutbox();
  REQUIRE(out.size() == 1);
  CHECK(out[0].header.work().id() != lost);
  CHECK(out[0].header.work().path() == in.files[1].path);
}

TEST_CASE("dispatcher: a unit left out of a new request was trained, its report lost with the old scheduler",
          "[work_dispatch]") {
  // The request that reaches a scheduler that took over first may be one the
  // worker made anew (queued while no scheduler listened), before it saw the
  // new scheduler and sent again its WORK_DONEs: a unit it leaves out is one
  // it trained. Granted again, it would be trained twice.
  Inputs in;
  uint64_t trained = 0;
  WorkDispatcher again = TakenOverWithAUnitInFlight(in, &trained);
  const std::vector<uint64_t> nothing;
  again.OnRequest(1, "w1", &nothing);
  auto out = again.TakeOutbox();
  REQUIRE(out.size() == 1);
  CHECK(out[0].header.work().id() != trained);  // the next unit
  CHECK(again.units_done() == 1);
  // Its WORK_DONE, sent again, changes nothing.
  again.OnDone(1, trained);
  CHECK(again.units_done() == 1);
}

TEST_CASE("dispatcher: a drained worker is told to leave, at once or when it asks, the others go on", "[work_dispatch]") {
  Inputs in;
  WorkDispatcher d = Dispatcher(in, 1000);
  d.OnRequest(1, "w1");
  d.OnRequest(2, "w2");
  d.TakeOutbox();
  d.Drain(2);
  CHECK(d.TakeOutbox().empty());  // it has not asked
  d.OnRequest(2, "w2");
  auto out = d.TakeOutbox();
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].header.has_work());
  CHECK_THAT(out[0].header.error(), Catch::Contains("drained"));
  d.OnRequest(1, "w1");
  out = d.TakeOutbox();
  REQUIRE(out.size() == 1);
  CHECK(out[0].header.has_work());  // worker 1 still gets units
}

TEST_CASE("dispatcher: the last unit done tells every waiting worker there is no more", "[work_dispatch]") {
  Inputs in;
  WorkDispatcher d = Dispatcher(in, 0);
  d.OnRequest(1, "w1");
  d.OnRequest(1, "w1");
  auto out = d.TakeOutbox();
  REQUIRE(out.size() == 2);
  d.OnRequest(2, "w2");
  d.OnRequest(3, "w3");
  CHECK(d.TakeOutbox().empty());
  d.OnDone(1, out[0].header.work().id());
  CHECK(d.TakeOutbox().empty());
  d.OnDone(1, out[1].header.work().id());
  out = d.TakeOutbox();
  REQUIRE(out.size() == 2);
  for (const auto& o : out) CHECK_FALSE(o.header.has_work());
}

TEST_CASE("dispatcher: a restarted scheduler takes over the pool with its units in flight", "[work_dispatch]") {
  Inputs in;
  WorkDispatcher d = Dispatcher(in, 1000, /*epochs=*/2);
  d.OnRequest(7, "a");
  d.OnRequest(8, "b");
  auto granted = d.TakeOutbox();
  d.OnDone(7, granted[0].header.work().id());
  WorkDispatcher again = WorkDispatcher::FromState(d.ToState());
  CHECK(again.pool().pending() == d.pool().pending());
  CHECK(again.pool().in_flight() == 1);
  CHECK(again.units_done() == 1);
  // Worker 8 still holds its unit there, and can finish it.
  again.OnDone(8, granted[1].header.work().id());
  CHECK(again.units_done() == 2);
  // New units get new ids.
  again.OnRequest(7, "a");
  auto next = again.TakeOutbox();
  REQUIRE(next.size() == 1);
  CHECK(next[0].header.work().id() > granted[1].header.work().id());
}

// A worker's loader over a feed whose requests take units from `d` as
// worker `me`, waiting (as a worker waits for the scheduler's answer) while
// the last units are still being trained; records what it reported done.
struct FeedRig {
  WorkDispatcher* d;
  uint32_t me;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WorkDispatcher::Outgoing> answers;
  std::vector<uint64_t> reported;
  WorkFeed feed{[this](const std::vector<uint64_t>& held) {
                  std::lock_guard<std::mutex> lock(mu);
                  d->OnRequest(me, "w", &held);
                  for (auto& o : d->TakeOutbox()) answers.push_back(std::move(o));
                },
                [this]() -> absl::StatusOr<std::optional<pb::WorkRange>> {
                  std::unique_lock<std::mutex> lock(mu);
                  cv.wait(lock, [&] { return !answers.empty(); });
                  const pb::Header h = answers.front().header;
                  answers.erase(answers.begin());
                  if (!h.has_work()) return std::optional<pb::WorkRange>();
                  return std::optional<pb::WorkRange>(h.work());
                },
                [this](uint64_t id) {
                  std::lock_guard<std::mutex> lock(mu);
                  reported.push_back(id);
                  d->OnDone(me, id);
                  for (auto& o : d->TakeOutbox()) answers.push_back(std::move(o));
                  cv.notify_all();
                }};
  std::vector<uint64_t> Reported() {
    std::lock_guard<std::mutex> lock(mu);
    return reported;
  }
};

TEST_CASE("loader on a feed: every line once, no batch across units, a unit done only when all its batches are in",
          "[work_dispatch]") {
  Inputs in(/*lines=*/300);
  // ~1 KiB units: several per file, cut mid-line.
  WorkDispatcher d = Dispatcher(in, 1000, /*epochs=*/2);
  const size_t units = d.pool().pending();
  REQUIRE(units > 6);
  FeedRig rig{&d, 1};
  auto reader = std::make_unique<SplitReader>(std::vector<FileRange>(), NewLibsvmReader(), 0);
  DataLoader loader(std::move(reader), &rig.feed, {.batch_size = 64, .epochs = 2, .queue_batches = 2});
  loader.Start();
  std::map<int, int> seen;
  std::map<uint64_t, std::set<int>> unit_keys;
  std::vector<std::unique_ptr<Batch>> held;
  int starved_times = 0;
  while (true) {
    // As a compute thread does: when the loader waits for the next unit,
    // the batch it holds is trained first (the unit may be the last one,
    // which the scheduler waits for).
    bool starved = false;
    auto batch = loader.Next(&starved);
    if (batch.ok() && starved) {
      ++starved_times;
      for (auto& b : held) rig.feed.Trained(b->unit, b->unit_batch);
      held.clear();
      batch = loader.Next();
    }
    REQUIRE(batch.ok());
    if (*batch == nullptr) break;
    const Batch& b = **batch;
    REQUIRE(b.unit != 0);
    for (uint64_t key : b.unique_keys) {
      ++seen[static_cast<int>(key)];
      unit_keys[b.unit].insert(static_cast<int>(key));
    }
    // Batches are acknowledged one step late; a unit with a batch still
    // unacknowledged must not have been reported.
    if (!held.empty()) {
      rig.feed.Trained(held.back()->unit, held.back()->unit_batch);
      held.pop_back();
    }
    held.push_back(*std::move(batch));
    for (uint64_t id : rig.Reported()) REQUIRE(id != held.back()->unit);
  }
  for (auto& b : held) rig.feed.Trained(b->unit, b->unit_batch);
  // Each key once per epoch, from units that do not share keys.
  REQUIRE(seen.size() == 600);
  for (const auto& [key, n] : seen) CHECK(n == 2);
  size_t keys = 0;
  for (const auto& [unit, k] : unit_keys) keys += k.size();
  CHECK(keys == 1200);
  loader.Stop();
  CHECK(starved_times > 0);  // at least at the end: the last unit was the test's own
  CHECK(rig.Reported().size() == units);
  CHECK(d.finished());
  CHECK(rig.feed.InProgress().empty());
}

TEST_CASE("feed: how far into a unit, in the unit's order, though batches finish out of order", "[work_dispatch]") {
  std::vector<uint64_t> reported;
  uint64_t asked = 0;
  std::vector<std::vector<uint64_t>> asks;
  WorkFeed feed([&](const std::vector<uint64_t>& held) { asks.push_back(held); },
                [&]() -> absl::StatusOr<std::optional<pb::WorkRange>> {
                  pb::WorkRange r;
                  r.set_id(++asked);
                  return std::optional<pb::WorkRange>(r);
                },
                [&](uint64_t id) { reported.push_back(id); });
  auto u1 = feed.Next();
  REQUIRE(u1.ok());
  REQUIRE(u1->has_value());
  CHECK(feed.Emitted(1, 100, 10) == 0);
  CHECK(feed.Emitted(1, 250, 12) == 1);
  CHECK(feed.Emitted(1, 300, 4) == 2);
  // Batch 1 first: nothing is trained in order yet; all 26 are taken.
  feed.Trained(1, 1);
  pb::UnitProgress p = feed.InProgress().at(1);
  CHECK(p.trained_bytes() == 0);
  CHECK(p.taken_examples() == 26);
  feed.Trained(1, 0);
  p = feed.InProgress().at(1);
  CHECK(p.trained_bytes() == 250);
  CHECK(p.trained_examples() == 22);
  CHECK(p.taken_examples() == 4);
  feed.Sealed(1);
  CHECK(reported.empty());
  feed.Trained(1, 1);  // a repeat changes nothing
  feed.Trained(1, 2);
  CHECK(reported == std::vector<uint64_t>{1});
  CHECK(feed.InProgress().empty());
  // A unit with no batch at all (its range held no line start) is done when sealed.
  REQUIRE(feed.Next().ok());
  feed.Sealed(2);
  CHECK(reported == std::vector<uint64_t>{1, 2});
  // Each request named the units the worker still held: none, then none
  // (unit 1 was done before the second request).
  CHECK(asks == std::vector<std::vector<uint64_t>>{{}, {}});
  REQUIRE(feed.Next().ok());
  feed.Emitted(3, 10, 1);
  REQUIRE(feed.Next().ok());
  CHECK(asks.back() == std::vector<uint64_t>{3});
  CHECK(feed.units_done() == 2);
}

// Two workers each granted one unit of two; `talking` trains its unit and
// asks again (held: the other holds the last unit), then only it and s0
// keep talking, a quarter of the heartbeat timeout at a time, until the
// silent worker is declared lost and its unit granted to `talking`.
// `talking` then trains that unit too, is told there is none left, and
// passes the barrier 'training_done' alone, named the lead. `now` is left
// at the time of the grant.
void OnlyOneWorkerLeft(rig::Job& job, const std::string& talking, Clock::time_point* now) {
  auto g0 = job.Send("w0", Of(pb::WORK_REQUEST));
  auto g1 = job.Send("w1", Of(pb::WORK_REQUEST));
  REQUIRE(To(g0, pb::WORK_GRANT) == std::set<std::string>{"w0"});
  REQUIRE(To(g1, pb::WORK_GRANT) == std::set<std::string>{"w1"});
  const bool first = talking == "w0";
  pb::Header done = Of(pb::WORK_DONE);
  *done.mutable_work() = (first ? g0 : g1)[0].header.work();
  job.Send(talking, done);
  CHECK(job.Send(talking, Of(pb::WORK_REQUEST)).empty());
  const auto step = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(5.0 / 4));
  *now = job.t0;
  JobCoordinator::Signals signals;
  std::vector<JobCoordinator::Outgoing> out;
  for (int i = 0; i < 8 && To(out, pb::WORK_GRANT).empty(); ++i) {
    *now += step;
    for (const std::string& peer : {std::string("s0"), talking}) job.Send(peer, Of(pb::HEARTBEAT), *now);
    job.coordinator->CheckTimers(*now, &signals);
    out = job.coordinator->TakeOutbox();
  }
  CHECK_FALSE(job.coordinator->done());
  CHECK(job.coordinator->outcome().ok());
  REQUIRE(To(out, pb::WORK_GRANT) == std::set<std::string>{talking});
  const pb::WorkRange unit = rig::Find(out, pb::WORK_GRANT)->work();
  CHECK(unit.id() == (first ? g1 : g0)[0].header.work().id());
  *done.mutable_work() = unit;
  job.Send(talking, done, *now);
  auto none = job.Send(talking, Of(pb::WORK_REQUEST), *now);
  REQUIRE(none.size() == 1);
  CHECK_FALSE(none[0].header.has_work());
  pb::Header barrier = Of(pb::BARRIER);
  barrier.set_barrier("training_done");
  auto released = job.Send(talking, barrier, *now);
  REQUIRE(To(released, pb::BARRIER_RELEASE) == std::set<std::string>{talking});
  CHECK(released[0].header.lead_rank() == (first ? 0 : 1));
}

TEST_CASE("coordinator, on_demand: a silent worker's units go to another and the job finishes without it",
          "[work_dispatch]") {
  Inputs in;
  Config config = OnDemand(in);
  config.data.split_size_bytes = 0;
  config.worker.restart = false;
  rig::Job job(config);
  job.RegisterAll();
  // w1 goes silent; the others keep talking.
  // The barrier waits only for the live worker, and names it the lead.
  Clock::time_point now;
  OnlyOneWorkerLeft(job, "w0", &now);
  pb::Header report = Of(pb::WORKER_DONE);
  report.mutable_report()->set_train_examples(600);
  auto flushing = job.Send("w0", report, now);
  CHECK(To(flushing, pb::FLUSH) == std::set<std::string>{"s0"});
  const pb::JobSummary summary = job.coordinator->BuildSummary();
  CHECK(summary.workers_lost() == 1);
  CHECK(summary.work_units() == 2);

  // A worker that comes now has nothing to do and is told to exit.
  auto late = job.Register("w9", pb::WORKER);
  CHECK(To(late, pb::SHUTDOWN) == std::set<std::string>{"w9"});
}

TEST_CASE("coordinator, on_demand: a worker started again as the others pass the last barrier passes it at once",
          "[work_dispatch]") {
  // The launcher starts a fresh worker under a lost one's rank a heartbeat
  // timeout later: it may register after the barrier 'training_done' was
  // released and before the job's end. The barrier was not waiting for it,
  // and the others will not come back to it.
  Inputs in;
  Config config = OnDemand(in);
  config.data.split_size_bytes = 0;
  rig::Job job(config);
  job.RegisterAll();
  // w0 is lost (kill -9): its unit goes to w1, which trains both.
  Clock::time_point now;
  OnlyOneWorkerLeft(job, "w1", &now);

  // A fresh worker-0 registers before w1 has reported: it joins, has no
  // unit to train, and passes the barrier with the lead it was released
  // with (w1 evaluates; the newcomer must not evaluate a second time).
  pb::Header again = Of(pb::REGISTER);
  again.mutable_node()->set_role(pb::WORKER);
  again.mutable_node()->set_rank(0);
  again.mutable_node()->set_host("127.0.0.1");
  auto joined = job.Send("w0b", again, now);
  REQUIRE(To(joined, pb::REGISTER_REPLY) == std::set<std::string>{"w0b"});
  CHECK(rig::Find(joined, pb::REGISTER_REPLY)->node().rank() == 0);
  auto none = job.Send("w0b", Of(pb::WORK_REQUEST), now);
  REQUIRE(none.size() == 1);
  CHECK_FALSE(none[0].header.has_work());
  pb::Header barrier = Of(pb::BARRIER);
  barrier.set_barrier("training_done");
  auto passed = job.Send("w0b", barrier, now);
  REQUIRE(To(passed, pb::BARRIER_RELEASE) == std::set<std::string>{"w0b"});
  CHECK(passed[0].header.lead_rank() == 1);

  // Both report; the job ends.
  pb::Header report = Of(pb::WORKER_DONE);
  report.mutable_report()->set_train_examples(600);
  CHECK(To(job.Send("w1", report, now), pb::FLUSH).empty());  // the newcomer has not reported yet
  report.mutable_report()->set_train_examples(0);
  CHECK(To(job.Send("w0b", report, now), pb::FLUSH) == std::set<std::string>{"s0"});
  CHECK(job.coordinator->BuildSummary().workers_lost() == 1);
}

TEST_CASE("coordinator, on_demand: a unit is granted only once the state that records it is saved",
          "[work_dispatch]") {
  // Else a scheduler that takes over from the last save grants the unit
  // again, and two workers train it.
  Inputs in;
  Config config = OnDemand(in);
  config.data.split_size_bytes = 0;
  auto saved = std::make_shared<std::optional<pb::SchedulerState>>();
  rig::Job job(config, std::make_unique<rig::MemoryStateStore>(saved));
  job.RegisterAll();
  const Clock::time_point now = job.t0;
  // The grant waits for the event loop's save, the one write for all the
  // grants of its turn.
  auto out = job.Send("w0", Of(pb::WORK_REQUEST), now);
  CHECK(To(out, pb::WORK_GRANT).empty());
  job.coordinator->SaveState(now);
  out = job.coordinator->TakeOutbox();
  REQUIRE(To(out, pb::WORK_GRANT) == std::set<std::string>{"w0"});
  const uint64_t unit = rig::Find(out, pb::WORK_GRANT)->work().id();
  REQUIRE(saved->has_value());
  const auto& in_flight = (*saved)->work().in_flight();
  CHECK(std::any_of(in_flight.begin(), in_flight.end(), [&](const pb::WorkRange& r) { return r.id() == unit; }));

  // A scheduler taking over from that save grants w1 the other unit.
  rig::Job next(config, std::make_unique<rig::MemoryStateStore>(saved));
  out = next.Send("w1", Of(pb::WORK_REQUEST), now);
  next.coordinator->SaveState(now);
  auto more = next.coordinator->TakeOutbox();
  out.insert(out.end(), more.begin(), more.end());
  const pb::Header* other = rig::Find(out, pb::WORK_GRANT);
  REQUIRE(other != nullptr);
  CHECK(other->work().id() != unit);
}

TEST_CASE("coordinator, on_demand: a grant names the request it answers, a resent request's answer too",
          "[work_dispatch]") {
  // A worker resends its open request to a scheduler that took over; the
  // answer to the resent copy may reach it after it has asked again, and
  // must not be taken for the answer to the new request (the unit would be
  // trained twice, and the new request's own answer dropped).
  Inputs in;
  Config config = OnDemand(in);
  config.data.split_size_bytes = 0;
  rig::Job job(config);
  job.RegisterAll();
  pb::Header ask = Of(pb::WORK_REQUEST);
  ask.set_seq(7);
  auto first = job.Send("w0", ask);
  REQUIRE(To(first, pb::WORK_GRANT) == std::set<std::string>{"w0"});
  CHECK(first[0].header.seq() == 7);
  const uint64_t unit = first[0].header.work().id();
  // The same request sent again (to a scheduler that took over) before its
  // answer arrived: it names no unit held.
  ask.set_resent(true);
  auto again = job.Send("w0", ask);
  REQUIRE(To(again, pb::WORK_GRANT) == std::set<std::string>{"w0"});
  CHECK(again[0].header.work().id() == unit);
  CHECK(again[0].header.seq() == 7);
  // The next request, holding the unit: another unit, under its own number.
  ask.set_resent(false);
  ask.set_seq(8);
  (*ask.mutable_progress()->mutable_units())[unit];
  auto next = job.Send("w0", ask);
  REQUIRE(To(next, pb::WORK_GRANT) == std::set<std::string>{"w0"});
  CHECK(next[0].header.work().id() != unit);
  CHECK(next[0].header.seq() == 8);
}

TEST_CASE("coordinator, on_demand: a drained worker reports, is let go, and is not a loss", "[work_dispatch]") {
  Inputs in;
  Config config = OnDemand(in);
  config.data.split_size_bytes = 0;
  rig::Job job(config);
  job.RegisterAll();
  job.Send("w0", Of(pb::WORK_REQUEST));
  pb::Header drain = Of(pb::DRAIN_REQUEST);
  drain.mutable_node()->set_role(pb::WORKER);
  drain.mutable_node()->set_rank(1);
  auto reply = job.Send("ctl", drain);
  REQUIRE(reply.size() == 1);
  CHECK(reply[0].header.status() == 0);
  // While worker 1 drains, worker 0 is the only one left to train the rest.
  pb::Header drain0 = drain;
  drain0.mutable_node()->set_rank(0);
  reply = job.Send("ctl", drain0);
  REQUIRE(reply.size() == 1);
  CHECK_THAT(reply[0].header.error(), Catch::Contains("last worker not draining"));
  auto told = job.Send("w1", Of(pb::WORK_REQUEST));
  REQUIRE(To(told, pb::WORK_GRANT) == std::set<std::string>{"w1"});
  CHECK_FALSE(told[0].header.error().empty());
  pb::Header report = Of(pb::WORKER_DONE);
  report.mutable_report()->set_train_examples(0);
  CHECK(To(job.Send("w1", report), pb::SHUTDOWN) == std::set<std::string>{"w1"});
  // The barrier now waits for worker 0 alone.
  pb::Header barrier = Of(pb::BARRIER);
  barrier.set_barrier("training_done");
  CHECK(To(job.Send("w0", barrier), pb::BARRIER_RELEASE) == std::set<std::string>{"w0"});
  CHECK(job.coordinator->BuildSummary().workers_lost() == 0);
  // The last worker cannot be drained; neither can a worker of a static job.
  drain.mutable_node()->set_rank(0);
  reply = job.Send("ctl", drain);
  REQUIRE(reply.size() == 1);
  CHECK_THAT(reply[0].header.error(), Catch::Contains("last worker"));
  rig::Job plain(/*servers=*/1, /*workers=*/2);
  plain.RegisterAll();
  reply = plain.Send("ctl", drain);
  REQUIRE(reply.size() == 1);
  CHECK_THAT(reply[0].header.error(), Catch::Contains("on_demand"));
}

TEST_CASE("coordinator, on_demand: a worker that joins with no free rank grows the job (--join)", "[work_dispatch]") {
  Inputs in;
  Config config = OnDemand(in);
  rig::Job job(config);
  job.RegisterAll();
  pb::Header h = Of(pb::REGISTER);
  h.mutable_node()->set_role(pb::WORKER);
  h.mutable_node()->set_rank(-1);
  auto refused = job.Send("w9", h);
  REQUIRE(To(refused, pb::ABORT) == std::set<std::string>{"w9"});
  CHECK_THAT(refused[0].header.error(), Catch::Contains("ranks are taken"));
  h.mutable_node()->set_join(true);
  auto joined = job.Send("w2", h);
  REQUIRE(To(joined, pb::REGISTER_REPLY) == std::set<std::string>{"w2"});
  const pb::Header* reply = rig::Find(joined, pb::REGISTER_REPLY);
  CHECK(reply->node().rank() == 2);
  const pb::Header* view = rig::Find(joined, pb::CLUSTER_VIEW);
  REQUIRE(view != nullptr);
  CHECK(view->view().worker_steps_size() == 3);
  auto granted = job.Send("w2", Of(pb::WORK_REQUEST));
  CHECK(To(granted, pb::WORK_GRANT) == std::set<std::string>{"w2"});
  CHECK(job.coordinator->BuildSummary().worker_steps_size() == 3);
}

TEST_CASE("coordinator, static assignment: a lost worker still fails the job", "[work_dispatch]") {
  rig::Job job(/*servers=*/1, /*workers=*/1);
  job.RegisterAll();
  JobCoordinator::Signals signals;
  Clock::time_point now = job.t0;
  for (int i = 0; i < 8 && !job.coordinator->done(); ++i) {
    now += std::chrono::seconds(1);
    job.Send("s0", Of(pb::HEARTBEAT), now);
    job.coordinator->CheckTimers(now, &signals);
  }
  REQUIRE(job.coordinator->done());
  CHECK_THAT(std::string(job.coordinator->outcome().message()), Catch::Contains("worker-0"));
}

}  // namespace
}  // namespace sparta::work_dispatch_test
