// Config loading: values, overrides, and errors that name file, line and key.
#include <catch2/catch.hpp>

#include "common/config.h"

namespace sparta::config_test {
namespace {

const char* kValid = R"(cluster:
  scheduler: 127.0.0.1:7000
  servers: 2
  workers: 3
data:
  train: [a.txt, "b/*.txt"]
  batch_size: 128
model:
  name: fm
  embedding_dim: 4
optimizer:
  name: ftrl
  l1: 0.5
)";

std::string Error(const std::string& yaml, std::vector<std::string> sets = {}) {
  auto c = ParseConfig(yaml, "job.yaml", sets);
  REQUIRE_FALSE(c.ok());
  return std::string(c.status().message());
}

TEST_CASE("a valid config loads with defaults filled in") {
  auto c = ParseConfig(kValid, "job.yaml", {});
  REQUIRE(c.ok());
  CHECK(c->cluster.scheduler == "127.0.0.1:7000");
  CHECK(c->cluster.servers == 2);
  CHECK(c->cluster.workers == 3);
  CHECK(c->data.train == std::vector<std::string>{"a.txt", "b/*.txt"});
  CHECK(c->data.batch_size == 128);
  CHECK(c->data.format == "criteo");
  CHECK(c->model.name == "fm");
  CHECK(c->model.embedding_dim == 4);
  CHECK(c->optimizer.name == "ftrl");
  CHECK(c->optimizer.l1 == 0.5);
  CHECK(c->data.test.empty());
}

TEST_CASE("modes are parsed into enums once, at load, from the file or an override") {
  auto defaults = ParseConfig(kValid, "job.yaml", {});
  REQUIRE(defaults.ok());
  CHECK(defaults->worker.consistency_mode == Consistency::kAsp);
  CHECK(defaults->worker.backend_kind == BackendKind::kCpu);
  CHECK(defaults->wire.value_type == WireDtype::kFp32);
  CHECK(defaults->storage.durability_mode == Durability::kCheckpoint);
  CHECK(defaults->storage.ack_mode == AckMode::kAll);
  CHECK(defaults->storage.every.seconds == 0);
  CHECK(defaults->storage.every.steps == 0);
  CHECK(defaults->cluster.local_transport_mode == LocalTransport::kIpc);
  CHECK_FALSE(defaults->serving.follows_latest);
  auto c = ParseConfig(kValid, "job.yaml",
                       {"worker.consistency=bsp", "worker.backend=auto", "wire.dtype=fp16", "storage.durability=wal",
                        "storage.ack=primary", "storage.path=/tmp/x", "storage.checkpoint_every=500 steps",
                        "cluster.local_transport=tcp", "serving.model=latest"});
  REQUIRE(c.ok());
  CHECK(c->worker.consistency_mode == Consistency::kBsp);
  CHECK(c->worker.backend_kind == BackendKind::kAuto);
  CHECK(c->wire.value_type == WireDtype::kFp16);
  CHECK(c->storage.durability_mode == Durability::kWal);
  CHECK(c->storage.ack_mode == AckMode::kPrimary);
  CHECK(c->storage.every.steps == 500);
  CHECK(c->cluster.local_transport_mode == LocalTransport::kTcp);
  CHECK(c->serving.follows_latest);
  auto folder = ParseConfig(kValid, "job.yaml", {"serving.model=/data/ckpt/latest"});
  REQUIRE(folder.ok());
  CHECK_FALSE(folder->serving.follows_latest);  // a folder that happens to be named so is a folder
  CHECK_THAT(Error(kValid, {"storage.checkpoint_every=often"}), Catch::Contains("storage.checkpoint_every"));
  CHECK_THAT(Error(kValid, {"cluster.local_transport=udp"}), Catch::Contains("cluster.local_transport"));
}

TEST_CASE("data.assignment and data.split_size: parsed, and on_demand refuses what it cannot do yet") {
  auto defaults = ParseConfig(kValid, "job.yaml", {});
  REQUIRE(defaults.ok());
  CHECK(defaults->data.assignment_mode == Assignment::kStatic);
  CHECK(defaults->data.split_size_bytes == 64ull << 20);
  CHECK(defaults->worker.restart);
  auto c = ParseConfig(kValid, "job.yaml", {"data.assignment=on_demand", "data.split_size=16KiB", "worker.restart=false"});
  REQUIRE(c.ok());
  CHECK(c->data.assignment_mode == Assignment::kOnDemand);
  CHECK(c->data.split_size_bytes == 16384);
  CHECK_FALSE(c->worker.restart);
  CHECK_THAT(Error(kValid, {"data.assignment=dynamic"}), Catch::Contains("data.assignment"));
  CHECK_THAT(Error(kValid, {"data.split_size=lots"}), Catch::Contains("data.split_size"));
  // Shard streams: 16 MiB/s unless set; "0" is no limit.
  CHECK(c->server.stream_rate_bytes == 16u << 20);
  auto unpaced = ParseConfig(kValid, "job.yaml", {"server.stream_rate=0"});
  REQUIRE(unpaced.ok());
  CHECK(unpaced->server.stream_rate_bytes == 0);
  CHECK_THAT(Error(kValid, {"server.stream_rate=fast"}), Catch::Contains("server.stream_rate"));
  // Every consistency mode: bsp steps count on from the job's clock (ClockGate::Rebase).
  auto bsp = ParseConfig(kValid, "job.yaml", {"data.assignment=on_demand", "worker.consistency=bsp"});
  REQUIRE(bsp.ok());
  CHECK(bsp->worker.consistency_mode == Consistency::kBsp);
}

TEST_CASE("cluster.coordination: local by default, etcd endpoints and a key prefix parsed, standbys need etcd") {
  auto defaults = ParseConfig(kValid, "job.yaml", {});
  REQUIRE(defaults.ok());
  CHECK(defaults->cluster.coordination_mode == Coordination::kLocal);
  CHECK(defaults->cluster.schedulers.size() == 1);
  auto c = ParseConfig(kValid, "job.yaml",
                       {"cluster.coordination=etcd://10.0.0.1:2379, 10.0.0.2:2379", "cluster.scheduler=a:1,b:2"});
  REQUIRE(c.ok());
  CHECK(c->cluster.coordination_mode == Coordination::kEtcd);
  CHECK(c->cluster.etcd_endpoints == std::vector<std::string>{"10.0.0.1:2379", "10.0.0.2:2379"});
  CHECK(c->cluster.schedulers == std::vector<std::string>{"a:1", "b:2"});
  CHECK(c->cluster.etcd_prefix == "/sparta/a:1,b:2/");
  auto named = ParseConfig(kValid, "job.yaml", {"cluster.coordination=etcd://e:2379/ctr-daily"});
  REQUIRE(named.ok());
  CHECK(named->cluster.etcd_prefix == "/sparta/ctr-daily/");
  CHECK_THAT(Error(kValid, {"cluster.coordination=zookeeper://z:2181"}), Catch::Contains("cluster.coordination"));
  CHECK_THAT(Error(kValid, {"cluster.coordination=etcd://nohost"}), Catch::Contains("HOST:PORT"));
  CHECK_THAT(Error(kValid, {"cluster.coordination=etcd://"}), Catch::Contains("no etcd endpoint"));
  // Two schedulers with nowhere to share the job's state.
  CHECK_THAT(Error(kValid, {"cluster.scheduler=a:1,b:2"}),
             Catch::Contains("cluster.scheduler") && Catch::Contains("cluster.coordination"));
}

TEST_CASE("overrides (--set) use the same dotted names") {
  auto c = ParseConfig(kValid, "job.yaml", {"data.batch_size=64", "model.name=lr", "data.test=t.txt"});
  REQUIRE(c.ok());
  CHECK(c->data.batch_size == 64);
  CHECK(c->model.name == "lr");
  CHECK(c->data.test == std::vector<std::string>{"t.txt"});
}

TEST_CASE("an unknown key names file, line and key, with a suggestion") {
  std::string yaml = kValid;
  yaml += "worker:\n  max_inflihgt: 3\n";
  const std::string e = Error(yaml);
  CHECK(e.find("job.yaml:15") != std::string::npos);
  CHECK(e.find("unknown key 'worker.max_inflihgt'") != std::string::npos);
  CHECK(e.find("did you mean 'worker.max_inflight'") != std::string::npos);
}

TEST_CASE("a wrong type names file, line and key") {
  std::string yaml = kValid;
  yaml.replace(yaml.find("batch_size: 128"), 15, "batch_size: lots");
  const std::string e = Error(yaml);
  CHECK(e.find("job.yaml:7") != std::string::npos);
  CHECK(e.find("'data.batch_size'") != std::string::npos);
  CHECK(e.find("expected an integer") != std::string::npos);
}

TEST_CASE("a value outside its choices or range is refused") {
  std::string yaml = kValid;
  yaml.replace(yaml.find("name: fm"), 8, "name: gbdt");
  CHECK(Error(yaml).find("job.yaml:9: key 'model.name': expected one of lr, fm") != std::string::npos);
  CHECK(Error(kValid, {"data.batch_size=0"}).find("--set data.batch_size=0: key 'data.batch_size'") !=
        std::string::npos);
  CHECK(Error(kValid, {"cluster.num_shards=100"}).find("power of two") != std::string::npos);
}

TEST_CASE("a missing required key is named with the line of its section") {
  std::string yaml = kValid;
  yaml.replace(yaml.find("  workers: 3\n"), 12, "");
  const std::string e = Error(yaml);
  CHECK(e.find("job.yaml:1: missing required key 'cluster.workers'") != std::string::npos);
}

TEST_CASE("bad overrides and bad YAML are errors, not crashes") {
  CHECK(Error(kValid, {"no_equals_sign"}).find("expected key=value") != std::string::npos);
  CHECK(Error(kValid, {"data.nope=1"}).find("unknown key 'data.nope'") != std::string::npos);
  CHECK(Error("cluster: [unclosed\n").find("job.yaml:") != std::string::npos);
  CHECK(Error("just a string").find("must be a mapping") != std::string::npos);
  CHECK(Error(std::string(kValid) + "log: 5\n").find("job.yaml:14: key 'log' is a section") != std::string::npos);
}

TEST_CASE("the JSON dump has every key") {
  auto c = ParseConfig(kValid, "job.yaml", {});
  REQUIRE(c.ok());
  const std::string json = ConfigToJson(*c);
  CHECK(json.find("\"cluster.scheduler\": \"127.0.0.1:7000\"") != std::string::npos);
  CHECK(json.find("\"data.train\": [\"a.txt\", \"b/*.txt\"]") != std::string::npos);
  CHECK(json.find("\"optimizer.l1\": 0.5") != std::string::npos);
}

}  // namespace
}  // namespace sparta::config_test

namespace sparta::config_test {
namespace {

TEST_CASE("plugin options, MLP sizes and consistency keys load, with where each key was set") {
  const std::string yaml = R"(cluster: {scheduler: "h:1", servers: 1, workers: 1}
data: {train: x}
model:
  plugin: /opt/my_model.so
  top_mlp: [256, 64]
  options:
    depth: 3
    sizes: [4, 5]
worker:
  consistency: ssp
  staleness: 4
  threads: 3
)";
  auto c = ParseConfig(yaml, "job.yaml", {"model.options.extra=x"});
  REQUIRE(c.ok());
  CHECK(c->model.plugin == "/opt/my_model.so");
  CHECK(c->model.top_mlp == std::vector<int64_t>{256, 64});
  CHECK(c->model.bottom_mlp == std::vector<int64_t>{32, 8});  // the default
  CHECK(c->model.options == std::map<std::string, std::string>{{"depth", "3"}, {"sizes", "4,5"}, {"extra", "x"}});
  CHECK(c->worker.consistency == "ssp");
  CHECK(c->worker.consistency_mode == Consistency::kSsp);
  CHECK(c->worker.staleness == 4);
  CHECK(c->worker.threads == 3);
  CHECK(c->Where("model.plugin") == "job.yaml:4");
  CHECK(c->Where("model.options.extra") == "--set model.options.extra=x");
}

TEST_CASE("malformed plugin options, layer lists and consistency modes name file, line and key") {
  const std::string base = "cluster: {scheduler: 'h:1', servers: 1, workers: 1}\ndata: {train: x}\n";
  CHECK(Error(base + "model:\n  options: 5\n") == "job.yaml:4: key 'model.options': expected a mapping of option: value");
  CHECK(Error(base + "model:\n  top_mlp: [64, x]\n") ==
        "job.yaml:4: key 'model.top_mlp': expected a list of integers; got 'x' in it");
  CHECK(Error(base + "model:\n  bottom_mlp: [0]\n").find("job.yaml:4: key 'model.bottom_mlp': must be in [1,") == 0);
  CHECK(Error(base + "worker:\n  consistency: sync\n") ==
        "job.yaml:4: key 'worker.consistency': expected one of asp, ssp, bsp; got 'sync'");
  CHECK(Error(base + "model:\n  name: gbdt\n").find("expected one of lr, fm, dnn") != std::string::npos);
}

}  // namespace
}  // namespace sparta::config_test

namespace sparta::config_test {
namespace {

TEST_CASE("yes/no keys take true/false and refuse anything else, naming the key") {
  auto c = ParseConfig(kValid, "job.yaml", {"data.allow_empty=true", "cluster.shutdown_grace=7.5"});
  REQUIRE(c.ok());
  CHECK(c->data.allow_empty);
  CHECK(c->cluster.shutdown_grace == 7.5);
  CHECK_FALSE(ParseConfig(kValid, "job.yaml", {})->data.allow_empty);
  const std::string e = Error(kValid, {"data.allow_empty=maybe"});
  CHECK_THAT(e, Catch::Contains("data.allow_empty"));
  CHECK_THAT(e, Catch::Contains("expected true or false"));
}

}  // namespace
}  // namespace sparta::config_test
