// CheckpointCoordinator, the scheduler's side of a checkpoint, driven as
// the scheduler drives it (its messages through the hooks), on real files:
// the servers are told to cut only once every worker has paused, the
// checkpoint is published (manifest, folder, LATEST) only once every live
// server is done, requests during a checkpoint collapse into one that
// follows, a failed cut is retried and the third failure in a row fails the
// job, and numbering goes on from what is on disk.
#include "scheduler/checkpoint_coordinator.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"

#include "common/checkpoint_files.h"
#include "common/delta_files.h"

namespace sparta::checkpoint_coordinator_test {
namespace {

namespace fs = std::filesystem;

struct Sent {
  pb::MsgType type;
  pb::Role to;
  uint64_t version;
  std::string dir;
};

struct Fixture {
  Fixture() : path(fs::temp_directory_path() / ("sparta-ckpt-" + std::to_string(getpid()))) {
    fs::remove_all(path);
    config.storage.path = path.string();
    config.cluster.workers = 2;
    config.cluster.servers = 2;
  }
  ~Fixture() { fs::remove_all(path); }

  CheckpointCoordinator Make() {
    CheckpointCoordinator::Hooks hooks;
    hooks.broadcast = [this](const pb::Header& h, pb::Role to) {
      sent.push_back({h.type(), to, h.checkpoint().version(), h.checkpoint().dir()});
    };
    hooks.fail = [this](const std::string& reason) { failure = reason; };
    hooks.live_servers = [] { return 2; };
    hooks.shard_owner = [] { return std::vector<uint32_t>{0, 1, 0, 1}; };
    return CheckpointCoordinator(config, hooks);
  }

  // Both workers pause (after 10 and 12 steps) and both servers cut.
  void RunThrough(CheckpointCoordinator& c, uint64_t version, const std::string& server_error = "") {
    pb::CheckpointInfo paused;
    paused.set_version(version);
    paused.set_steps(10);
    c.OnPaused(0, paused);
    paused.set_steps(12);
    c.OnPaused(1, paused);
    for (int rank = 0; rank < 2; ++rank) {
      pb::Header done;
      done.set_type(pb::CHECKPOINT_DONE);
      done.mutable_checkpoint()->set_version(version);
      done.mutable_checkpoint()->set_rows(100);
      if (rank == 1) done.set_error(server_error);
      c.OnServerDone(rank, done);
    }
  }

  fs::path path;
  Config config;
  std::vector<Sent> sent;
  std::string failure;
};

TEST_CASE("servers cut only once every worker paused, published once every server is done", "[checkpoint]") {
  Fixture f;
  CheckpointCoordinator c = f.Make();
  REQUIRE(c.enabled());
  int then_called = 0;
  c.Start("test", [&] { ++then_called; });
  REQUIRE(c.busy());
  REQUIRE(f.sent.size() == 1);
  CHECK(f.sent[0].type == pb::PAUSE);
  CHECK(f.sent[0].to == pb::WORKER);
  CHECK(f.sent[0].version == 1);

  pb::CheckpointInfo paused;
  paused.set_version(1);
  paused.set_steps(7);
  c.OnPaused(0, paused);
  pb::CheckpointInfo stale = paused;
  stale.set_version(0);  // an answer to an older pause counts for nothing
  c.OnPaused(1, stale);
  CHECK(f.sent.size() == 1);
  paused.set_steps(9);
  c.OnPaused(1, paused);
  REQUIRE(f.sent.size() == 2);
  CHECK(f.sent[1].type == pb::CHECKPOINT);
  CHECK(f.sent[1].to == pb::SERVER);
  const std::string tmp = f.sent[1].dir;
  CHECK(fs::is_directory(tmp));

  pb::Header done;
  done.set_type(pb::CHECKPOINT_DONE);
  done.mutable_checkpoint()->set_version(1);
  done.mutable_checkpoint()->set_rows(40);
  c.OnServerDone(0, done);
  CHECK(c.busy());
  CHECK(c.last_version() == 0);
  CHECK(then_called == 0);
  c.OnServerDone(1, done);
  CHECK_FALSE(c.busy());
  CHECK(then_called == 1);
  CHECK(c.last_version() == 1);
  REQUIRE(f.sent.size() == 3);
  CHECK(f.sent[2].type == pb::RESUME);
  CHECK_FALSE(fs::exists(tmp));
  auto manifest = ReadManifest(c.published_dir());
  REQUIRE(manifest.ok());
  CHECK(manifest->version() == 1);
  CHECK(manifest->rows() == 80);
  CHECK(manifest->worker_steps_size() == 2);
  CHECK(manifest->worker_steps(0) == 7);
  CHECK(manifest->worker_steps(1) == 9);
  CHECK(manifest->shard_owner_size() == 4);
  CHECK(ListCheckpoints(f.path.string()) == std::vector<uint64_t>{1});
  CHECK(f.failure.empty());
}

TEST_CASE("requests during a checkpoint collapse into one that follows it", "[checkpoint]") {
  Fixture f;
  CheckpointCoordinator c = f.Make();
  std::vector<std::string> order;
  c.Start("first", [&] { order.push_back("first"); });
  c.Start("second", [&] { order.push_back("second"); });
  c.Start("third", [&] { order.push_back("third"); });
  f.RunThrough(c, 1);
  CHECK(order == std::vector<std::string>{"first"});
  REQUIRE(c.busy());  // the collapsed one started at once
  CHECK(f.sent.back().type == pb::PAUSE);
  CHECK(f.sent.back().version == 2);
  f.RunThrough(c, 2);
  CHECK(order == std::vector<std::string>{"first", "second", "third"});
  CHECK_FALSE(c.busy());
  CHECK(ListCheckpoints(f.path.string()) == std::vector<uint64_t>{1, 2});
}

TEST_CASE("a failed cut is retried, the third failure in a row fails the job", "[checkpoint]") {
  Fixture f;
  CheckpointCoordinator c = f.Make();
  bool published = false;
  c.Start("wanted", [&] { published = true; });
  f.RunThrough(c, 1, "disk full");
  CHECK(f.failure.empty());
  CHECK_FALSE(published);
  REQUIRE(c.busy());  // something waits on it: tried again at once
  CHECK(f.sent.back().version == 2);
  f.RunThrough(c, 2, "disk full");
  CHECK(f.failure.empty());
  f.RunThrough(c, 3, "disk full");
  CHECK_THAT(f.failure, Catch::Contains("checkpoints failed 3 times in a row"));
  CHECK_THAT(f.failure, Catch::Contains("server-1: disk full"));
  CHECK(ListCheckpoints(f.path.string()).empty());
  CHECK_FALSE(published);
}

TEST_CASE("numbering goes on from the checkpoints on disk", "[checkpoint]") {
  Fixture f;
  {
    CheckpointCoordinator first = f.Make();
    first.Start("a");
    f.RunThrough(first, 1);
    REQUIRE(first.last_version() == 1);
  }
  CheckpointCoordinator again = f.Make();  // a resumed job, or a restarted scheduler
  CHECK(again.last_version() == 1);
  f.sent.clear();
  again.Start("b");
  REQUIRE_FALSE(f.sent.empty());
  CHECK(f.sent[0].version == 2);
}

}  // namespace
}  // namespace sparta::checkpoint_coordinator_test

namespace sparta::checkpoint_coordinator_test {
namespace {

std::vector<std::string> DeltaNames(const fs::path& storage) {
  std::vector<std::string> names;
  for (const DeltaRef& d : ListDeltas(storage.string())) names.push_back(fs::path(d.dir).filename().string());
  return names;
}

TEST_CASE("published versions chain their deltas, a failed one is retried from the same base, and a checkpoint "
          "prunes the deltas it holds", "[checkpoint][publish]") {
  Fixture f;
  f.config.serving.publish_every_seconds = 1;
  f.config.serving.publish_every = "1s";
  CheckpointCoordinator c = f.Make();
  c.BeginJob(0);
  c.Publish();
  REQUIRE(c.busy());
  f.RunThrough(c, 1);
  CHECK_FALSE(c.busy());
  // A version is no checkpoint.
  CHECK(ListCheckpoints(f.path.string()).empty());
  CHECK(c.last_version() == 0);
  CHECK(c.published_model_version() == 1);
  CHECK(DeltaNames(f.path) == std::vector<std::string>{"delta-000001-from-000000"});
  auto manifest = ReadDeltaManifest(ListDeltas(f.path.string())[0].dir);
  REQUIRE(manifest.ok());
  CHECK(manifest->version() == 1);
  CHECK(manifest->base() == 0);
  CHECK(manifest->shard_owner_size() == 4);

  // A cut that fails on a server publishes nothing: the next goes on from
  // the same base, and the servers are told so.
  c.Publish();
  f.RunThrough(c, 2, "disk full");
  CHECK_FALSE(c.busy());
  c.Publish();
  pb::CheckpointInfo paused;
  paused.set_version(3);
  c.OnPaused(0, paused);
  c.OnPaused(1, paused);
  REQUIRE(f.sent.back().type == pb::CHECKPOINT);
  f.RunThrough(c, 3);
  CHECK(DeltaNames(f.path) == std::vector<std::string>{"delta-000001-from-000000", "delta-000003-from-000001"});

  // A checkpoint is a version too; the next one would prune the deltas up
  // to it, but keeps the newest kDeltasKept: a follower of version 3 (one
  // poll behind two checkpoints in a row) still finds the delta from 3.
  c.Start("test");
  f.RunThrough(c, 4);
  CHECK(ListCheckpoints(f.path.string()) == std::vector<uint64_t>{4});
  CHECK(DeltaNames(f.path).back() == "delta-000004-from-000003");
  CHECK(DeltaNames(f.path).size() == 3);
  c.Start("test");
  f.RunThrough(c, 5);
  CHECK(DeltaNames(f.path) == std::vector<std::string>{"delta-000001-from-000000", "delta-000003-from-000001",
                                                       "delta-000004-from-000003", "delta-000005-from-000004"});
  // Past kDeltasKept, those up to the checkpoint before the last go.
  uint64_t version = 6;
  for (size_t i = 0; i < CheckpointCoordinator::kDeltasKept; ++i) {
    c.Publish();
    f.RunThrough(c, version++);
  }
  c.Start("test");
  f.RunThrough(c, version);
  const std::vector<std::string> kept = DeltaNames(f.path);
  // Those since checkpoint 5 (from 6 on): the newest 16 and one more.
  REQUIRE(kept.size() == CheckpointCoordinator::kDeltasKept + 1);
  CHECK(kept.front() == "delta-000006-from-000005");
  CHECK(kept.back() == absl::StrCat("delta-0000", version, "-from-0000", version - 1));

  // A new job from checkpoint 4 starts another history: the deltas of this
  // one go, and numbering goes on past every version served so far.
  CheckpointCoordinator restored = f.Make();
  restored.BeginJob(4);
  CHECK(DeltaNames(f.path).empty());
  restored.Publish();
  f.RunThrough(restored, version + 1);
  CHECK(DeltaNames(f.path) == std::vector<std::string>{absl::StrCat("delta-0000", version + 1, "-from-000004")});
  CHECK(f.failure.empty());
}

}  // namespace
}  // namespace sparta::checkpoint_coordinator_test

namespace sparta::checkpoint_coordinator_test {
namespace {

TEST_CASE("a worker that cannot save its own state fails the checkpoint, and the pause names the folder",
          "[checkpoint]") {
  Fixture f;
  CheckpointCoordinator c = f.Make();
  c.Start("test");
  REQUIRE(f.sent.size() == 1);
  CHECK(f.sent[0].type == pb::PAUSE);
  const std::string dir = f.sent[0].dir;  // where a worker writes its state
  CHECK(fs::is_directory(dir));
  pb::CheckpointInfo paused;
  paused.set_version(1);
  c.OnPaused(0, paused);
  c.OnPaused(1, paused, pb::WorkerProgress(), "torch.save: disk full");
  CHECK_FALSE(c.busy());
  CHECK(f.sent.back().type == pb::RESUME);  // never cut
  CHECK_FALSE(fs::exists(dir));
  CHECK(ListCheckpoints(f.path.string()).empty());
  CHECK(f.failure.empty());  // one failure does not end the job
}

}  // namespace
}  // namespace sparta::checkpoint_coordinator_test
