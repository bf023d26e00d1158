// Config: the one YAML file that describes a cluster and a job, as typed data.
//
// Every daemon loads the same file with LoadConfig() and applies the same
// `--set key=value` overrides, so all of them agree on the job. Keys use dotted
// names ("data.batch_size"), both in the file (as nested mappings) and in
// overrides. An unknown key, a value of the wrong type or out of range, or a
// missing required key is an InvalidArgument error whose message names the
// file, the line and the key. A Config is a plain value: copy it freely; it
// is not synchronized.
#ifndef SPARTA_COMMON_CONFIG_H_
#define SPARTA_COMMON_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sparta {

enum class LocalTransport { kIpc, kTcp };  // cluster.local_transport
enum class Coordination { kLocal, kEtcd };   // cluster.coordination

struct ClusterConfig {
  // host:port of the scheduler (required); with cluster.coordination etcd,
  // a comma-separated list: one scheduler leads, the others stand by, and
  // nodes reach whichever leads.
  std::string scheduler;
  std::vector<std::string> schedulers;  // parsed from scheduler
  int servers = 0;                   // number of servers (required)
  int workers = 0;                   // number of workers (required)
  std::string host = "127.0.0.1";    // interface servers/workers bind to
  double heartbeat_interval = 0.5;   // seconds between heartbeats
  double heartbeat_timeout = 5.0;    // seconds of silence before a node is dead
  double startup_timeout = 60.0;     // seconds for every node to register
  // Seconds a node waits for a lost scheduler to come back (a restarted
  // scheduler takes over the running job) before it gives up.
  double scheduler_grace = 30.0;
  int num_shards = 256;              // virtual shards (power of two)
  // Seconds the job has, after a SIGTERM, to take its final checkpoint and
  // exit (Slurm preemption and Kubernetes eviction kill 30 s after SIGTERM
  // by default).
  double shutdown_grace = 20.0;
  // none: any peer that reaches a port is served; curve: every connection is
  // CurveZMQ-encrypted and a peer must prove it holds the cluster's secret
  // key (key_file, made by `sparta-ctl keygen`), or it is refused before any
  // message is read.
  std::string auth = "none";
  std::string key_file;
  // ipc: peers of the data plane (workers and servers, servers and their
  // replicas) that share a host, network and filesystem namespace talk
  // over a Unix socket (ipc://) instead of TCP loopback; tcp: always TCP.
  std::string local_transport = "ipc";
  LocalTransport local_transport_mode = LocalTransport::kIpc;  // parsed from local_transport
  // local: the scheduler keeps its state in <storage.path>/scheduler (a
  // restarted scheduler takes the job over; it dies with its disk).
  // etcd://HOST:PORT[,HOST:PORT...][/NAME]: the state lives in etcd, under
  // /sparta/NAME/ (default NAME: the scheduler addresses), and the
  // schedulers of cluster.scheduler elect a leader through an etcd lease
  // of cluster.heartbeat_timeout (at least 2 s); a standby takes over when
  // the leader dies, also with its disk (scheduler/leadership.h).
  std::string coordination = "local";
  Coordination coordination_mode = Coordination::kLocal;  // parsed from coordination
  std::vector<std::string> etcd_endpoints;                // parsed: host:port each
  std::string etcd_prefix;                                // parsed: /sparta/NAME/
  // Read from key_file when auth is curve (Z85 text, 40 characters each);
  // not config keys.
  std::string curve_public;
  std::string curve_secret;
};

// Prometheus metrics (see common/metrics.h).
struct MetricsConfig {
  // Port of each daemon's /metrics on its interface: 0 = one the OS picks
  // (logged, in the info file and in `sparta-ctl status`), -1 = off.
  // `scripts/sparta launch` gives daemons on one host consecutive ports
  // from a non-zero value.
  int port = 0;
};

struct ServerConfig {
  int threads = 2;  // shard executor threads per server
  // What a server may spend on everything that grows with the model (rows,
  // optimizer state, indexes, admission counters, RocksDB's cache and
  // memtables): bytes with a unit ("512MiB", "8GiB"). "" or 0: unbounded.
  // Past it, the coldest rows move to the server's RocksDB (the cold tier).
  std::string memory_limit;
  uint64_t memory_limit_bytes = 0;  // memory_limit, parsed; not a key
  // Bytes per second this server streams shards at (live moves and new
  // replicas, all streams together), with a unit ("16MiB"); "0": no limit.
  // Streams share the CPU and the network with training: unpaced, they
  // slowed it to a tenth and stretched its steps past 100 ms; at 32 MiB/s a
  // move of 10M rows still did (to 171 ms) on a 2-core machine, at 16 MiB/s
  // not (71 ms), and 1M small rows still move in under a second.
  std::string stream_rate = "16MiB";
  uint64_t stream_rate_bytes = 16 << 20;  // stream_rate, parsed; not a key
};

// How one embedding table lives on the servers (embedding.* for every table,
// embedding.tables.<name>.* for one). Applies to sparse tables; dense tables
// and Sparta's own (sparta.*) are always admitted and never expire.
struct TablePolicyConfig {
  // Which rows leave DRAM first under server.memory_limit: s3fifo (new
  // rows wait in a small FIFO queue before the main CLOCK), lru (least
  // recently used) or lfu (least frequently used); all approximate (CLOCK).
  std::string eviction_policy = "s3fifo";
  // "" (never), "<n> steps" or "<seconds>s": a row not updated for that
  // long is deleted; a key that comes back starts from its initializer.
  std::string ttl;
  // A key gets a row once it has occurred this many times in pushed
  // batches (0 or 1: at once); counted in a count-min sketch.
  int64_t admission_min_count = 0;
  // Bytes of the sketch per table on each server. The default suits about
  // 2M distinct keys awaiting admission per server: a sketch with fewer
  // than two counters a row per such key overcounts (admits early) more
  // and more (README: Tables larger than memory).
  std::string admission_counter_bytes = "16MiB";
  uint64_t admission_counter_bytes_value = 16 << 20;  // parsed; not a key
  // Else (or also) admits a key with this probability per occurrence,
  // decided by a hash of the key and model.seed, so replicas agree. 1: off.
  double admission_probability = 1.0;
};

struct EmbeddingConfig {
  TablePolicyConfig defaults;                        // embedding.*
  std::map<std::string, TablePolicyConfig> tables;  // embedding.tables.<name>.*
  // The policy of table `name`.
  const TablePolicyConfig& For(const std::string& name) const {
    auto it = tables.find(name);
    return it != tables.end() ? it->second : defaults;
  }
};

enum class Assignment { kStatic, kOnDemand };  // data.assignment

struct DataConfig {
  std::vector<std::string> train;  // paths or globs (required)
  std::vector<std::string> test;   // paths or globs; empty: no evaluation
  std::string format = "criteo";   // criteo | libsvm (built-in readers)
  std::string plugin;              // a reader plugin (.so); replaces `format`
  std::map<std::string, std::string> options;  // handed to the reader plugin
  int batch_size = 4096;
  int epochs = 1;
  int64_t max_bad_lines = 1000;  // more malformed lines than this is an error
  // A worker whose share of data.train holds no example fails the job
  // (a wrong glob, an empty file) unless this is set.
  bool allow_empty = false;
  int queue_batches = 4;         // parsed batches buffered ahead of compute
  // static: worker r reads a slice of data.train fixed at launch (see
  // common/input_split.h); on_demand: the scheduler cuts data.train into
  // work units of split_size bytes and hands each worker its next one when
  // it asks, so workers may die, be restarted or differ in speed
  // (scheduler/work_pool.h).
  std::string assignment = "static";
  Assignment assignment_mode = Assignment::kStatic;  // parsed; not a key
  std::string split_size = "64MiB";  // on_demand: bytes per unit; 0: whole files
  uint64_t split_size_bytes = 64ull << 20;  // split_size, parsed; not a key
  // Online learning: the job watches data.train (folders or globs) every
  // follow_interval seconds for files that arrive while it runs (renamed
  // into place; names starting with '.' are not read), trains each once,
  // and runs until it is stopped. Needs on_demand and one epoch.
  bool follow = false;
  double follow_interval = 1.0;
};

struct ModelConfig {
  std::string name = "lr";   // lr | fm | dnn (built-in models)
  std::string plugin;        // a model plugin (.so); replaces `name`
  int embedding_dim = 8;     // fm, dnn
  double init_scale = 0.01;  // fm, dnn: embeddings ~ U(-s, s)
  int64_t seed = 2024;       // per-key initializer seed
  std::vector<int64_t> bottom_mlp{32, 8};  // dnn: layers over the dense features
  std::vector<int64_t> top_mlp{128, 64};   // dnn: hidden layers over [embeddings, bottom]
  std::map<std::string, std::string> options;  // more options, handed to the model (plugin)
};

struct OptimizerConfig {
  std::string name = "adagrad";  // sgd | adagrad | ftrl | adam
  double learning_rate = 0.05;   // also FTRL's alpha
  double initial_accumulator = 0.1;
  double epsilon = 1e-8;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double l1 = 0.0;  // FTRL L1
  double l2 = 0.0;  // L2 (FTRL's lambda2; weight decay for the others)
  double ftrl_beta = 1.0;
  // Dense tables (MLP layers, biases): another optimizer, as deep CTR
  // models use (sparse Adagrad + dense Adam). "" / 0: the same as above.
  std::string dense_name;
  double dense_learning_rate = 0;
};

// The modes of the keys below, parsed once when the config is loaded (the
// text stays as written, for messages and the launcher).
enum class Consistency { kAsp, kSsp, kBsp };       // worker.consistency
enum class BackendKind { kCpu, kCuda, kAuto };  // worker.backend
enum class WireDtype { kFp32, kFp16 };             // wire.dtype
enum class Durability { kCheckpoint, kWal };       // storage.durability
enum class AckMode { kAll, kPrimary };             // storage.ack

// storage.checkpoint_every, parsed.
struct CheckpointEvery {
  double seconds = 0;  // 0: not by time
  uint64_t steps = 0;  // 0: not by steps
};

struct WorkerConfig {
  // Where the model computes: cpu (OpenBLAS, the default), cuda (a GPU; an
  // error if there is none) or auto (the GPU if there is one, else the CPU).
  std::string backend = "cpu";
  BackendKind backend_kind = BackendKind::kCpu;  // parsed; not a key
  int threads = 1;       // compute threads, sharing one connection and one parameter cache
  // asp: fully asynchronous; ssp: no worker more than `staleness` steps
  // ahead of the slowest; bsp: every step waits for all workers, and the
  // servers apply the step's summed gradients at once.
  std::string consistency = "asp";
  Consistency consistency_mode = Consistency::kAsp;  // parsed; not a key
  int staleness = 2;     // ssp's bound, in steps
  int max_inflight = 4;  // batches whose push may be unacknowledged
  double request_timeout = 60.0;  // seconds before a request is an error
  // 1: every step also adds 1 to this worker's row of an audit table, and
  // worker 0 reports the counts at the end: an exactly-once check of pushes
  // across failovers and restores (summary.json: audit_counts, worker_steps).
  int audit = 0;
  // data.assignment on_demand: a worker that dies is started again under
  // its rank by the launcher (at most 3 times per rank); false: its units
  // go to the other workers and the job finishes without it.
  bool restart = true;
};

struct WireConfig {
  std::string dtype = "fp32";  // fp32 | fp16: values of pulls and pushes on the wire
  WireDtype value_type = WireDtype::kFp32;  // parsed; not a key
};

// Persistence, checkpoints and replication (see server/row_store.h and
// scheduler/checkpoint_coordinator.h).
struct StorageConfig {
  // Folder for each server's RocksDB (server-<rank>/) and the checkpoints
  // (checkpoints/). Empty: rows live in memory only and no checkpoint is
  // possible; `scripts/sparta launch` sets it to the run folder.
  std::string path;
  // Where each server keeps its RocksDB (server-<rank>/) when that is not
  // under `path`: e.g. a volume per server in Kubernetes while `path` (the
  // checkpoints, which every server and the scheduler write) is shared.
  std::string db_path;
  std::string durability = "checkpoint";  // checkpoint | wal
  Durability durability_mode = Durability::kCheckpoint;  // parsed; not a key
  // "" (never), "<seconds>s" or "<n> steps" (steps of worker 0).
  std::string checkpoint_every;
  CheckpointEvery every;  // parsed; not a key
  int keep = 3;  // checkpoints kept; older ones are deleted. One is also made at the end of the job.
  std::string restore;       // "" | latest | a checkpoint folder
  int replication_factor = 1;
  std::string ack = "all";   // all | primary
  AckMode ack_mode = AckMode::kAll;  // parsed; not a key
};

absl::StatusOr<CheckpointEvery> ParseCheckpointEvery(const std::string& text);

// "512MiB", "8GiB", "1.5GB", "4096" (bytes): binary (KiB, MiB, GiB, TiB) and
// decimal (KB, MB, GB, TB) units, case-insensitive; "" is 0.
absl::StatusOr<uint64_t> ParseByteSize(const std::string& text);

struct EvalConfig {
  std::string predictions_out;  // when set: one probability per test line
};

// sparta-serve (worker/serving/): a trained model answering predictions.
struct ServingConfig {
  // Which model version to load: a checkpoint folder, or "latest" (the
  // newest complete checkpoint under storage.path). Required by sparta-serve.
  // With "latest", a newer complete checkpoint (a running job's, made every
  // storage.checkpoint_every) is loaded as it appears, every poll_interval
  // seconds, and served from then on.
  std::string model;
  bool follows_latest = false;  // model is "latest": parsed; not a key
  double poll_interval = 1.0;
  // A training job publishes a model version this often ("30s"; "" never):
  // the rows changed since the version before (common/delta_files.h), which
  // a sparta-serve following the job applies on top of what it serves.
  std::string publish_every;
  double publish_every_seconds = 0;  // parsed; not a key
  std::string name;  // the NAME of /v1/models/NAME; "" = the model's (model.name, or the plugin's file name)
  int port = 8501;   // HTTP (TensorFlow Serving's REST port); 0: one the OS picks
  // The ZeroMQ endpoint (Sparta's wire format; zmq_predict_endpoint.h);
  // 0: one the OS picks; -1: none.
  int zmq_port = 8502;
  // 0: one sparta-serve process holds every table itself (embedded).
  // N: sparse tables live on N sparta-server processes started with
  // --serving (a serving cluster: AsServingCluster), read-only, and the
  // front-ends pull their rows through a cache of `cache` bytes.
  int shards = 0;
  std::string cache = "64MiB";
  uint64_t cache_bytes = 64 << 20;  // cache, parsed; not a key
  // This daemon belongs to a serving cluster (sparta-scheduler and
  // sparta-server --serving): set by AsServingCluster, not a key.
  bool cluster = false;
  int threads = 1;          // compute threads, each running whole batches
  // Connections served at once: each open connection holds an HTTP thread
  // while it stays open (keep-alive), so more clients than this wait.
  int connections = 64;
  int max_batch = 64;       // examples computed together (requests are batched up to it)
  int max_delay_us = 500;   // how long the first request of a batch waits for others
  double deadline = 1.0;    // seconds a request may take, unless it asks for less ("deadline_ms")
  std::string max_body = "4MiB";
  uint64_t max_body_bytes = 4 << 20;  // max_body, parsed; not a key
};

struct LogConfig {
  std::string level = "info";     // trace | debug | info | warn | error
  double progress_interval = 2.0; // seconds between worker progress lines
  // When set, each worker appends its progress lines to
  // <metrics_dir>/worker-<rank>.csv (`scripts/sparta plot` draws them).
  std::string metrics_dir;
};

struct Config {
  ClusterConfig cluster;
  ServerConfig server;
  DataConfig data;
  ModelConfig model;
  OptimizerConfig optimizer;
  WorkerConfig worker;
  WireConfig wire;
  StorageConfig storage;
  EvalConfig eval;
  LogConfig log;
  MetricsConfig metrics;
  EmbeddingConfig embedding;
  ServingConfig serving;

  std::string source;  // the file it was loaded from, for messages
  // "file:line" (or "--set ...") of each key that was given, so that later
  // checks (a plugin that will not load) can point at it.
  std::map<std::string, std::string> where;
  std::string Where(const std::string& key) const {
    auto it = where.find(key);
    return it != where.end() ? it->second : source;
  }
};

// Loads `path` and applies `overrides` ("key=value", value in YAML syntax).
absl::StatusOr<Config> LoadConfig(const std::string& path,
                                  const std::vector<std::string>& overrides);

// Parses YAML text as if it came from a file named `source_name`.
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text,
                                   const std::string& source_name,
                                   const std::vector<std::string>& overrides);

// Turns a job's configuration into its serving cluster's (sparta-scheduler
// and sparta-server --serving): serving.shards servers, no workers, the
// model version serving.model restored onto them, no checkpoints and no
// published versions (nothing changes), rows kept under storage.db_path
// (default: <storage.path>/serving-db, never the training job's own).
// Errors name the file, line and key.
absl::Status AsServingCluster(Config* config);

// The resolved configuration as one JSON object with dotted keys.
std::string ConfigToJson(const Config& config);

}  // namespace sparta

#endif  // SPARTA_COMMON_CONFIG_H_
