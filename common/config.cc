#include "common/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "common/curve_keys.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace sparta {
namespace {

// What a key accepts besides its type.
struct FieldRule {
  bool required = false;
  std::vector<std::string> choices;  // allowed string values, if not empty
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
};

FieldRule Required() { return FieldRule{.required = true}; }
FieldRule OneOf(std::vector<std::string> choices) { return FieldRule{.choices = std::move(choices)}; }
FieldRule AtLeast(double min) { return FieldRule{.min = min}; }
FieldRule Between(double min, double max) { return FieldRule{.min = min, .max = max}; }

// The keys of one table policy, under `prefix` ("embedding" or
// "embedding.tables.<name>").
template <class Visitor>
void VisitTablePolicy(TablePolicyConfig& p, const std::string& prefix, Visitor& v) {
  v((prefix + ".eviction.policy").c_str(), p.eviction_policy, OneOf({"lru", "lfu", "s3fifo"}));
  v((prefix + ".eviction.ttl").c_str(), p.ttl, FieldRule{});
  v((prefix + ".admission.min_count").c_str(), p.admission_min_count, Between(0, 255));
  v((prefix + ".admission.counter_bytes").c_str(), p.admission_counter_bytes, FieldRule{});
  v((prefix + ".admission.probability").c_str(), p.admission_probability, Between(0, 1));
}

// What follows the table's name in a per-table key.
const char* const kTablePolicySuffixes[] = {".eviction.policy", ".eviction.ttl", ".admission.min_count",
                                            ".admission.counter_bytes", ".admission.probability"};
constexpr char kTablesPrefix[] = "embedding.tables.";

// The single list of keys. Every consumer (loader, JSON dump) walks it, so a
// new key is added in exactly one place.
template <class Visitor>
void VisitFields(Config& c, Visitor& v) {
  v("cluster.scheduler", c.cluster.scheduler, Required());
  v("cluster.servers", c.cluster.servers, FieldRule{.required = true, .min = 1, .max = 4096});
  v("cluster.workers", c.cluster.workers, FieldRule{.required = true, .min = 1, .max = 65536});
  v("cluster.host", c.cluster.host, FieldRule{});
  v("cluster.heartbeat_interval", c.cluster.heartbeat_interval, Between(0.01, 60));
  v("cluster.heartbeat_timeout", c.cluster.heartbeat_timeout, Between(0.05, 3600));
  v("cluster.startup_timeout", c.cluster.startup_timeout, Between(1, 86400));
  v("cluster.scheduler_grace", c.cluster.scheduler_grace, Between(0.05, 86400));
  v("cluster.num_shards", c.cluster.num_shards, Between(1, 1 << 20));
  v("cluster.shutdown_grace", c.cluster.shutdown_grace, Between(0.1, 3600));
  v("cluster.auth", c.cluster.auth, OneOf({"none", "curve"}));
  v("cluster.key_file", c.cluster.key_file, FieldRule{});
  v("cluster.local_transport", c.cluster.local_transport, OneOf({"ipc", "tcp"}));
  v("cluster.coordination", c.cluster.coordination, FieldRule{});
  v("server.threads", c.server.threads, Between(1, 256));
  v("server.memory_limit", c.server.memory_limit, FieldRule{});
  v("server.stream_rate", c.server.stream_rate, FieldRule{});
  v("data.train", c.data.train, Required());
  v("data.test", c.data.test, FieldRule{});
  v("data.format", c.data.format, OneOf({"criteo", "libsvm"}));
  v("data.plugin", c.data.plugin, FieldRule{});
  v("data.options", c.data.options, FieldRule{});
  v("data.batch_size", c.data.batch_size, Between(1, 1 << 24));
  v("data.epochs", c.data.epochs, Between(1, 1 << 20));
  v("data.max_bad_lines", c.data.max_bad_lines, AtLeast(0));
  v("data.allow_empty", c.data.allow_empty, FieldRule{});
  v("data.queue_batches", c.data.queue_batches, Between(1, 1024));
  v("data.assignment", c.data.assignment, OneOf({"static", "on_demand"}));
  v("data.split_size", c.data.split_size, FieldRule{});
  v("data.follow", c.data.follow, FieldRule{});
  v("data.follow_interval", c.data.follow_interval, Between(0.01, 3600));
  v("model.name", c.model.name, OneOf({"lr", "fm", "dnn"}));
  v("model.plugin", c.model.plugin, FieldRule{});
  v("model.embedding_dim", c.model.embedding_dim, Between(1, 4096));
  v("model.init_scale", c.model.init_scale, AtLeast(0));
  v("model.seed", c.model.seed, AtLeast(0));
  v("model.bottom_mlp", c.model.bottom_mlp, Between(1, 1 << 16));
  v("model.top_mlp", c.model.top_mlp, Between(1, 1 << 16));
  v("model.options", c.model.options, FieldRule{});
  v("optimizer.name", c.optimizer.name, OneOf({"sgd", "adagrad", "ftrl", "adam"}));
  v("optimizer.learning_rate", c.optimizer.learning_rate, AtLeast(0));
  v("optimizer.initial_accumulator", c.optimizer.initial_accumulator, AtLeast(0));
  v("optimizer.epsilon", c.optimizer.epsilon, AtLeast(0));
  v("optimizer.beta1", c.optimizer.beta1, Between(0, 1));
  v("optimizer.beta2", c.optimizer.beta2, Between(0, 1));
  v("optimizer.l1", c.optimizer.l1, AtLeast(0));
  v("optimizer.l2", c.optimizer.l2, AtLeast(0));
  v("optimizer.ftrl_beta", c.optimizer.ftrl_beta, AtLeast(0));
  v("optimizer.dense_name", c.optimizer.dense_name, OneOf({"", "sgd", "adagrad", "ftrl", "adam"}));
  v("optimizer.dense_learning_rate", c.optimizer.dense_learning_rate, AtLeast(0));
  v("worker.backend", c.worker.backend, OneOf({"cpu", "cuda", "auto"}));
  v("worker.threads", c.worker.threads, Between(1, 256));
  v("worker.consistency", c.worker.consistency, OneOf({"asp", "ssp", "bsp"}));
  v("worker.staleness", c.worker.staleness, Between(0, 1 << 20));
  v("worker.max_inflight", c.worker.max_inflight, Between(1, 1024));
  v("worker.request_timeout", c.worker.request_timeout, Between(0.1, 86400));
  v("worker.audit", c.worker.audit, Between(0, 1));
  v("worker.restart", c.worker.restart, FieldRule{});
  v("wire.dtype", c.wire.dtype, OneOf({"fp32", "fp16"}));
  v("storage.path", c.storage.path, FieldRule{});
  v("storage.durability", c.storage.durability, OneOf({"checkpoint", "wal"}));
  v("storage.db_path", c.storage.db_path, FieldRule{});
  v("storage.checkpoint_every", c.storage.checkpoint_every, FieldRule{});
  v("storage.keep", c.storage.keep, Between(1, 1000));
  v("storage.restore", c.storage.restore, FieldRule{});
  v("storage.replication_factor", c.storage.replication_factor, Between(1, 16));
  v("storage.ack", c.storage.ack, OneOf({"all", "primary"}));
  v("eval.predictions_out", c.eval.predictions_out, FieldRule{});
  v("log.level", c.log.level, OneOf({"trace", "debug", "info", "warn", "error"}));
  v("log.progress_interval", c.log.progress_interval, Between(0.01, 3600));
  v("log.metrics_dir", c.log.metrics_dir, FieldRule{});
  v("metrics.port", c.metrics.port, Between(-1, 65535));
  v("serving.model", c.serving.model, FieldRule{});
  v("serving.poll_interval", c.serving.poll_interval, Between(0.01, 3600));
  v("serving.publish_every", c.serving.publish_every, FieldRule{});
  v("serving.name", c.serving.name, FieldRule{});
  v("serving.port", c.serving.port, Between(0, 65535));
  v("serving.zmq_port", c.serving.zmq_port, Between(-1, 65535));
  v("serving.shards", c.serving.shards, Between(0, 4096));
  v("serving.threads", c.serving.threads, Between(1, 256));
  v("serving.connections", c.serving.connections, Between(1, 4096));
  v("serving.max_batch", c.serving.max_batch, Between(1, 1 << 20));
  v("serving.max_delay_us", c.serving.max_delay_us, Between(0, 10000000));
  v("serving.deadline", c.serving.deadline, Between(0.001, 3600));
  v("serving.max_body", c.serving.max_body, FieldRule{});
  v("serving.cache", c.serving.cache, FieldRule{});
  VisitTablePolicy(c.embedding.defaults, "embedding", v);
  // Keys a table does not set fall back to embedding.* (see Loader::Take).
  for (auto& [name, policy] : c.embedding.tables) VisitTablePolicy(policy, kTablesPrefix + name, v);
}

// A value found in the file or on the command line, with where it came from.
struct Leaf {
  YAML::Node node;
  std::string where;  // "file:line" or "--set key=value"
  bool used = false;
};

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

class Loader {
 public:
  explicit Loader(std::string source) : source_(std::move(source)) {}

  // Records every leaf of `node` under its dotted name.
  absl::Status Flatten(const YAML::Node& node, const std::string& prefix) {
    if (!node.IsMap()) {
      if (prefix.empty() && !node.IsNull()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(node), ": the top level must be a mapping of sections"));
      }
      if (!prefix.empty()) leaves_[prefix] = Leaf{node, Where(node)};
      return absl::OkStatus();
    }
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) {
        return absl::InvalidArgumentError(absl::StrCat(Where(kv.first), ": keys must be plain names"));
      }
      std::string key = prefix.empty() ? kv.first.Scalar() : absl::StrCat(prefix, ".", kv.first.Scalar());
      // Anchor the leaf at its key so that the message points at the key's line.
      if (kv.second.IsMap()) {
        sections_[key] = Where(kv.first);
        SPARTA_RETURN_IF_ERROR(Flatten(kv.second, key));
      } else {
        leaves_[key] = Leaf{kv.second, Where(kv.first)};
      }
    }
    return absl::OkStatus();
  }

  absl::Status Override(const std::string& assignment) {
    size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", assignment, ": expected key=value (e.g. data.batch_size=1024)"));
    }
    std::string key = assignment.substr(0, eq);
    std::string value = assignment.substr(eq + 1);
    YAML::Node node;
    try {
      node = value.empty() ? YAML::Node(std::string()) : YAML::Load(value);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", assignment, ": key '", key,
                                                     "': not a valid YAML value: ", e.msg));
    }
    if (node.IsNull()) node = YAML::Node(value);
    leaves_[key] = Leaf{node, absl::StrCat("--set ", assignment)};
    return absl::OkStatus();
  }

  // Visitor callbacks: one per field type.
  void operator()(const char* key, std::string& out, const FieldRule& rule) {
    Leaf* leaf = Take(key, rule);
    if (leaf == nullptr) return;
    if (!leaf->node.IsScalar()) return Fail(*leaf, key, "expected a string");
    std::string v = leaf->node.Scalar();
    if (!rule.choices.empty() &&
        std::find(rule.choices.begin(), rule.choices.end(), v) == rule.choices.end()) {
      return Fail(*leaf, key,
                  absl::StrCat("expected one of ", absl::StrJoin(rule.choices, ", "), "; got '", v, "'"));
    }
    if (rule.required && v.empty()) return Fail(*leaf, key, "must not be empty");
    out = v;
  }
  void operator()(const char* key, std::vector<std::string>& out, const FieldRule& rule) {
    Leaf* leaf = Take(key, rule);
    if (leaf == nullptr) return;
    std::vector<std::string> v;
    if (leaf->node.IsScalar()) {
      if (!leaf->node.Scalar().empty()) v.push_back(leaf->node.Scalar());
    } else if (leaf->node.IsSequence()) {
      for (const auto& item : leaf->node) {
        if (!item.IsScalar()) return Fail(*leaf, key, "expected a list of paths");
        v.push_back(item.Scalar());
      }
    } else {
      return Fail(*leaf, key, "expected a path, a glob or a list of them");
    }
    if (rule.required && v.empty()) return Fail(*leaf, key, "must name at least one path");
    out = std::move(v);
  }
  // A list of integers, each checked against the rule's range.
  void operator()(const char* key, std::vector<int64_t>& out, const FieldRule& rule) {
    Leaf* leaf = Take(key, rule);
    if (leaf == nullptr) return;
    if (!leaf->node.IsSequence()) return Fail(*leaf, key, "expected a list of integers, e.g. [64, 32]");
    std::vector<int64_t> v;
    for (const auto& item : leaf->node) {
      const std::string s = item.IsScalar() ? item.Scalar() : "";
      int64_t x = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
      if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
        return Fail(*leaf, key, absl::StrCat("expected a list of integers; got '", s, "' in it"));
      }
      if (!CheckRange(*leaf, key, static_cast<double>(x), rule)) return;
      v.push_back(x);
    }
    out = std::move(v);
  }
  // A free-form section (plugin options): every scalar under `key.`, kept as
  // text for the plugin to interpret; a list becomes "a,b,c".
  void operator()(const char* key, std::map<std::string, std::string>& out, const FieldRule&) {
    const std::string prefix = absl::StrCat(key, ".");
    for (auto& [name, leaf] : leaves_) {
      if (name == key) {
        leaf.used = true;
        if (!leaf.node.IsNull()) Fail(leaf, key, "expected a mapping of option: value");
        continue;
      }
      if (name.rfind(prefix, 0) != 0) continue;
      leaf.used = true;
      std::string value;
      if (leaf.node.IsScalar()) {
        value = leaf.node.Scalar();
      } else if (leaf.node.IsSequence()) {
        for (const auto& item : leaf.node) absl::StrAppend(&value, value.empty() ? "" : ",", item.Scalar());
      }
      out[name.substr(prefix.size())] = value;
    }
  }
  // The tables named in embedding.tables.<name>.<policy key> (a table's
  // name may itself contain dots, as "fm.wv" does).
  std::vector<std::string> PolicyTables() const {
    std::vector<std::string> names;
    for (const auto& [key, leaf] : leaves_) {
      if (key.rfind(kTablesPrefix, 0) != 0) continue;
      for (const char* suffix : kTablePolicySuffixes) {
        const size_t n = std::strlen(suffix);
        if (key.size() > n + sizeof(kTablesPrefix) - 1 && key.compare(key.size() - n, n, suffix) == 0) {
          names.push_back(key.substr(sizeof(kTablesPrefix) - 1, key.size() - n - (sizeof(kTablesPrefix) - 1)));
        }
      }
    }
    return names;
  }
  // Where each given key came from.
  std::map<std::string, std::string> Locations() const {
    std::map<std::string, std::string> where;
    for (const auto& [name, leaf] : leaves_) where[name] = leaf.where;
    return where;
  }
  void operator()(const char* key, int& out, const FieldRule& rule) {
    int64_t v;
    if (TakeInteger(key, rule, &v)) out = static_cast<int>(v);
  }
  void operator()(const char* key, int64_t& out, const FieldRule& rule) { TakeInteger(key, rule, &out); }
  void operator()(const char* key, bool& out, const FieldRule& rule) {
    Leaf* leaf = Take(key, rule);
    if (leaf == nullptr) return;
    const std::string s = leaf->node.IsScalar() ? leaf->node.Scalar() : "";
    if (s == "true" || s == "yes" || s == "on" || s == "1") {
      out = true;
    } else if (s == "false" || s == "no" || s == "off" || s == "0") {
      out = false;
    } else {
      Fail(*leaf, key, absl::StrCat("expected true or false; got '", s, "'"));
    }
  }
  void operator()(const char* key, double& out, const FieldRule& rule) {
    Leaf* leaf = Take(key, rule);
    if (leaf == nullptr) return;
    const std::string s = leaf->node.IsScalar() ? leaf->node.Scalar() : "";
    char* end = nullptr;
    double v = s.empty() ? NAN : std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v)) {
      return Fail(*leaf, key, absl::StrCat("expected a number; got '", s, "'"));
    }
    if (!CheckRange(*leaf, key, v, rule)) return;
    out = v;
  }

  // After the visit: anything not consumed is an unknown key.
  absl::Status Finish(const std::vector<std::string>& known) {
    if (!errors_.empty()) return absl::InvalidArgumentError(errors_.front());
    for (const auto& [key, leaf] : leaves_) {
      if (leaf.used) continue;
      bool is_section = false;
      for (const auto& k : known) is_section |= k.rfind(key + ".", 0) == 0;
      if (is_section) {
        return absl::InvalidArgumentError(
            absl::StrCat(leaf.where, ": key '", key, "' is a section and must be a mapping"));
      }
      std::string best;
      size_t best_distance = 4;
      for (const auto& k : known) {
        size_t d = EditDistance(key, k);
        if (d < best_distance) best_distance = d, best = k;
      }
      return absl::InvalidArgumentError(absl::StrCat(leaf.where, ": unknown key '", key, "'",
                                                     best.empty() ? "" : absl::StrCat(" (did you mean '", best, "'?)")));
    }
    return absl::OkStatus();
  }

  std::string Where(const YAML::Node& node) const {
    const YAML::Mark m = node.Mark();
    return absl::StrCat(source_, ":", m.is_null() ? 1 : m.line + 1);
  }

 private:
  Leaf* Take(const char* key, const FieldRule& rule) {
    auto it = leaves_.find(key);
    if (it == leaves_.end()) it = leaves_.find(TableDefaultKey(key));
    if (it == leaves_.end() || it->second.node.IsNull()) {
      if (it != leaves_.end()) it->second.used = true;
      if (rule.required) {
        std::string k = key;
        std::string section = k.substr(0, k.find('.'));
        auto sec = sections_.find(section);
        std::string where = sec != sections_.end() ? sec->second : absl::StrCat(source_, ":1");
        errors_.push_back(absl::StrCat(where, ": missing required key '", key, "'"));
      }
      return nullptr;
    }
    it->second.used = true;
    return &it->second;
  }

  // embedding.tables.<name>.<policy key> -> embedding.<policy key>; any
  // other key -> "".
  static std::string TableDefaultKey(const std::string& key) {
    if (key.rfind(kTablesPrefix, 0) != 0) return "";
    for (const char* suffix : kTablePolicySuffixes) {
      const size_t n = std::strlen(suffix);
      if (key.size() > n && key.compare(key.size() - n, n, suffix) == 0) return absl::StrCat("embedding", suffix);
    }
    return "";
  }

  bool TakeInteger(const char* key, const FieldRule& rule, int64_t* out) {
    Leaf* leaf = Take(key, rule);
    if (leaf == nullptr) return false;
    const std::string s = leaf->node.IsScalar() ? leaf->node.Scalar() : "";
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
      Fail(*leaf, key, absl::StrCat("expected an integer; got '", s, "'"));
      return false;
    }
    if (!CheckRange(*leaf, key, static_cast<double>(v), rule)) return false;
    *out = v;
    return true;
  }

  bool CheckRange(const Leaf& leaf, const char* key, double v, const FieldRule& rule) {
    if (v < rule.min || v > rule.max) {
      std::string range = std::isinf(rule.max) ? absl::StrCat(">= ", rule.min)
                                               : absl::StrCat("in [", rule.min, ", ", rule.max, "]");
      Fail(leaf, key, absl::StrCat("must be ", range, "; got ", v));
      return false;
    }
    return true;
  }

  void Fail(const Leaf& leaf, const char* key, const std::string& what) {
    errors_.push_back(absl::StrCat(leaf.where, ": key '", key, "': ", what));
  }

  std::string source_;
  std::map<std::string, Leaf> leaves_;
  std::map<std::string, std::string> sections_;
  std::vector<std::string> errors_;
};

struct KeyCollector {
  std::vector<std::string> keys;
  template <class T>
  void operator()(const char* key, T&, const FieldRule&) {
    keys.emplace_back(key);
  }
};

// Checks that involve more than one key, or facts the type cannot express.
absl::Status Validate(const Config& c) {
  auto bad = [&](const std::string& key, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(c.source, ": key '", key, "': ", what));
  };
  if ((c.cluster.num_shards & (c.cluster.num_shards - 1)) != 0) {
    return bad("cluster.num_shards", absl::StrCat("must be a power of two; got ", c.cluster.num_shards));
  }
  if (c.cluster.num_shards < c.cluster.servers) {
    return bad("cluster.num_shards", "must be at least cluster.servers");
  }
  for (const std::string& address : c.cluster.schedulers) {
    if (address.find(':') == std::string::npos) {
      return bad("cluster.scheduler", absl::StrCat("expected host:port; got '", address, "'"));
    }
  }
  if (c.cluster.schedulers.empty()) return bad("cluster.scheduler", "expected host:port; got nothing");
  if (c.cluster.schedulers.size() > 1 && c.cluster.coordination_mode != Coordination::kEtcd) {
    return absl::InvalidArgumentError(absl::StrCat(
        c.Where("cluster.scheduler"), ": key 'cluster.scheduler': lists ", c.cluster.schedulers.size(),
        " schedulers, but only one can run without a shared place for the job's state: set cluster.coordination "
        "to etcd://HOST:PORT"));
  }
  if (c.cluster.heartbeat_timeout <= c.cluster.heartbeat_interval) {
    return bad("cluster.heartbeat_timeout", "must be longer than cluster.heartbeat_interval");
  }
  if (c.storage.replication_factor > c.cluster.servers) {
    return bad("storage.replication_factor", absl::StrCat("is ", c.storage.replication_factor, " but there are only ",
                                                           c.cluster.servers, " servers to hold the copies"));
  }
  if (c.cluster.auth == "curve" && c.cluster.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(c.Where("cluster.auth"), ": key 'cluster.auth' is curve, so ",
                                                   "cluster.key_file must name the cluster's key file (make one ",
                                                   "with `sparta-ctl keygen FILE`)"));
  }
  return absl::OkStatus();
}

// cluster.coordination: "local", or "etcd://" endpoints and an optional
// "/NAME" (the key prefix; default: the scheduler addresses).
absl::Status ParseCoordination(const std::string& text, const std::string& schedulers, ClusterConfig* cluster) {
  cluster->etcd_endpoints.clear();
  cluster->etcd_prefix.clear();
  if (text == "local") {
    cluster->coordination_mode = Coordination::kLocal;
    return absl::OkStatus();
  }
  constexpr absl::string_view kScheme = "etcd://";
  if (!absl::StartsWith(text, kScheme)) {
    return absl::InvalidArgumentError(absl::StrCat("expected local or etcd://HOST:PORT[,HOST:PORT...]; got '", text, "'"));
  }
  absl::string_view rest = absl::string_view(text).substr(kScheme.size());
  std::string name = schedulers;
  if (auto slash = rest.find('/'); slash != absl::string_view::npos) {
    if (slash + 1 < rest.size()) name = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
  }
  for (absl::string_view endpoint : absl::StrSplit(rest, ',', absl::SkipWhitespace())) {
    endpoint = absl::StripAsciiWhitespace(endpoint);
    const size_t colon = endpoint.rfind(':');
    uint32_t port = 0;
    if (colon == absl::string_view::npos || colon == 0 || !absl::SimpleAtoi(endpoint.substr(colon + 1), &port) ||
        port == 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("expected etcd endpoints as HOST:PORT; got '", endpoint, "' in '",
                                                     text, "'"));
    }
    cluster->etcd_endpoints.emplace_back(endpoint);
  }
  if (cluster->etcd_endpoints.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no etcd endpoint in '", text, "'"));
  }
  cluster->coordination_mode = Coordination::kEtcd;
  cluster->etcd_prefix = absl::StrCat("/sparta/", name, "/");
  return absl::OkStatus();
}

// Parses the keys whose text has a unit (byte sizes, durations) into their
// values, and the modes into their enums (their text is checked against
// the choices as it is read); an error names the key and where it was given.
absl::Status ParseUnits(Config* c) {
  auto bad = [&](const std::string& key, const absl::Status& st) {
    return absl::InvalidArgumentError(absl::StrCat(c->Where(key), ": key '", key, "': ", st.message()));
  };
  c->worker.consistency_mode = c->worker.consistency == "bsp"   ? Consistency::kBsp
                               : c->worker.consistency == "ssp" ? Consistency::kSsp
                                                                : Consistency::kAsp;
  c->worker.backend_kind = c->worker.backend == "cuda"   ? BackendKind::kCuda
                           : c->worker.backend == "auto" ? BackendKind::kAuto
                                                         : BackendKind::kCpu;
  c->wire.value_type = c->wire.dtype == "fp16" ? WireDtype::kFp16 : WireDtype::kFp32;
  c->cluster.local_transport_mode = c->cluster.local_transport == "tcp" ? LocalTransport::kTcp : LocalTransport::kIpc;
  c->cluster.schedulers = absl::StrSplit(c->cluster.scheduler, ',', absl::SkipWhitespace());
  for (std::string& s : c->cluster.schedulers) s = std::string(absl::StripAsciiWhitespace(s));
  if (auto st = ParseCoordination(c->cluster.coordination, c->cluster.scheduler, &c->cluster); !st.ok()) {
    return bad("cluster.coordination", st);
  }
  c->storage.durability_mode = c->storage.durability == "wal" ? Durability::kWal : Durability::kCheckpoint;
  c->storage.ack_mode = c->storage.ack == "primary" ? AckMode::kPrimary : AckMode::kAll;
  auto every = ParseCheckpointEvery(c->storage.checkpoint_every);
  if (!every.ok()) return bad("storage.checkpoint_every", every.status());
  c->storage.every = *every;
  auto limit = ParseByteSize(c->server.memory_limit);
  if (!limit.ok()) return bad("server.memory_limit", limit.status());
  c->server.memory_limit_bytes = *limit;
  auto rate = ParseByteSize(c->server.stream_rate);
  if (!rate.ok()) return bad("server.stream_rate", rate.status());
  c->server.stream_rate_bytes = *rate;
  auto body = ParseByteSize(c->serving.max_body);
  if (!body.ok()) return bad("serving.max_body", body.status());
  if (*body < 1024) return bad("serving.max_body", absl::InvalidArgumentError("must be at least 1KiB"));
  c->serving.max_body_bytes = *body;
  auto cache = ParseByteSize(c->serving.cache);
  if (!cache.ok()) return bad("serving.cache", cache.status());
  c->serving.cache_bytes = *cache;
  if (c->serving.shards > c->cluster.num_shards) {
    return bad("serving.shards", absl::InvalidArgumentError(absl::StrCat(
                                     "is ", c->serving.shards, " but the tables have only cluster.num_shards ",
                                     c->cluster.num_shards, " shards to spread")));
  }
  auto publish = ParseCheckpointEvery(c->serving.publish_every);
  if (!publish.ok()) return bad("serving.publish_every", publish.status());
  if (publish->steps != 0) {
    return bad("serving.publish_every", absl::InvalidArgumentError("a publishing interval is a time (\"30s\"), not steps"));
  }
  c->serving.publish_every_seconds = publish->seconds;
  c->serving.follows_latest = c->serving.model == "latest";
  if (publish->seconds > 0 && c->storage.path.empty()) {
    return bad("serving.publish_every", absl::InvalidArgumentError("needs storage.path (where versions are published)"));
  }
  c->data.assignment_mode = c->data.assignment == "on_demand" ? Assignment::kOnDemand : Assignment::kStatic;
  auto split = ParseByteSize(c->data.split_size);
  if (!split.ok()) return bad("data.split_size", split.status());
  c->data.split_size_bytes = *split;
  if (c->data.follow && c->data.assignment_mode != Assignment::kOnDemand) {
    return bad("data.follow", absl::InvalidArgumentError(
                                  "a followed input is handed out as it arrives: it needs data.assignment: on_demand"));
  }
  if (c->data.follow && c->data.epochs != 1) {
    return bad("data.follow", absl::InvalidArgumentError("a followed input is trained once: data.epochs must be 1"));
  }
  auto policy = [&](TablePolicyConfig& p, const std::string& prefix) -> absl::Status {
    auto bytes = ParseByteSize(p.admission_counter_bytes);
    if (!bytes.ok()) return bad(prefix + ".admission.counter_bytes", bytes.status());
    if (*bytes < 64) {
      return bad(prefix + ".admission.counter_bytes", absl::InvalidArgumentError("must be at least 64 bytes"));
    }
    p.admission_counter_bytes_value = *bytes;
    if (auto ttl = ParseCheckpointEvery(p.ttl); !ttl.ok()) return bad(prefix + ".eviction.ttl", ttl.status());
    return absl::OkStatus();
  };
  SPARTA_RETURN_IF_ERROR(policy(c->embedding.defaults, "embedding"));
  for (auto& [name, p] : c->embedding.tables) SPARTA_RETURN_IF_ERROR(policy(p, kTablesPrefix + name));
  return absl::OkStatus();
}

// cluster.auth: curve -> the cluster's key pair, from cluster.key_file.
absl::Status LoadClusterKeys(Config* c) {
  if (c->cluster.auth != "curve") return absl::OkStatus();
  const std::string where = absl::StrCat(c->Where("cluster.key_file"), ": key 'cluster.key_file': ");
  auto keys = ReadCurveKeyFile(c->cluster.key_file);
  if (!keys.ok()) return absl::InvalidArgumentError(absl::StrCat(where, keys.status().message()));
  c->cluster.curve_public = keys->public_key;
  c->cluster.curve_secret = keys->secret_key;
  return absl::OkStatus();
}

struct JsonWriter {
  std::string out = "{";
  void Sep() { out += out.size() > 1 ? ",\n  " : "\n  "; }
  void operator()(const char* key, std::string& v, const FieldRule&) { Sep(); out += JsonQuote(key) + ": " + JsonQuote(v); }
  void operator()(const char* key, std::vector<std::string>& v, const FieldRule&) {
    Sep();
    out += JsonQuote(key) + ": [";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + JsonQuote(v[i]);
    out += "]";
  }
  void operator()(const char* key, int& v, const FieldRule&) { Sep(); out += JsonQuote(key) + ": " + std::to_string(v); }
  void operator()(const char* key, int64_t& v, const FieldRule&) { Sep(); out += JsonQuote(key) + ": " + std::to_string(v); }
  void operator()(const char* key, double& v, const FieldRule&) { Sep(); out += JsonQuote(key) + ": " + JsonNumber(v); }
  void operator()(const char* key, bool& v, const FieldRule&) { Sep(); out += JsonQuote(key) + ": " + (v ? "true" : "false"); }
  void operator()(const char* key, std::vector<int64_t>& v, const FieldRule&) {
    Sep();
    out += JsonQuote(key) + ": [";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
    out += "]";
  }
  void operator()(const char* key, std::map<std::string, std::string>& v, const FieldRule&) {
    Sep();
    out += JsonQuote(key) + ": {";
    bool first = true;
    for (const auto& [name, value] : v) {
      out += (first ? "" : ", ") + JsonQuote(name) + ": " + JsonQuote(value);
      first = false;
    }
    out += "}";
  }
};

}  // namespace

absl::Status AsServingCluster(Config* c) {
  auto bad = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(c->Where(key), ": key '", key, "' ", why));
  };
  if (c->serving.shards <= 0) return bad("serving.shards", "must be at least 1 for a serving cluster (--serving)");
  if (c->serving.model.empty()) {
    return bad("serving.model", "is required: the checkpoint folder (or latest) the serving cluster serves");
  }
  if (c->storage.replication_factor > c->serving.shards) {
    return bad("storage.replication_factor", absl::StrCat("is ", c->storage.replication_factor, " but serving.shards ",
                                                          "is ", c->serving.shards, ": too few servers for the copies"));
  }
  if (c->serving.follows_latest && c->storage.path.empty()) {
    return bad("serving.model", "is latest, which needs storage.path (where the job's checkpoints are)");
  }
  c->cluster.servers = c->serving.shards;
  c->cluster.workers = 0;
  c->storage.restore = c->serving.model;
  c->storage.checkpoint_every.clear();
  c->storage.every = CheckpointEvery{};
  c->serving.publish_every.clear();
  c->serving.publish_every_seconds = 0;
  // Nothing is written after the restore: no log to keep.
  c->storage.durability = "checkpoint";
  c->storage.durability_mode = Durability::kCheckpoint;
  if (c->storage.db_path.empty() && !c->storage.path.empty()) {
    c->storage.db_path = (std::filesystem::path(c->storage.path) / "serving-db").string();
  }
  c->serving.cluster = true;
  return absl::OkStatus();
}

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& source_name,
                                   const std::vector<std::string>& overrides) {
  Loader loader(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", e.mark.is_null() ? 1 : e.mark.line + 1, ": YAML syntax error: ", e.msg));
  }
  absl::Status st = loader.Flatten(root, "");
  if (!st.ok()) return st;
  for (const auto& o : overrides) {
    st = loader.Override(o);
    if (!st.ok()) return st;
  }
  Config config;
  config.source = source_name;
  for (const std::string& table : loader.PolicyTables()) config.embedding.tables[table];
  KeyCollector known;
  VisitFields(config, known);
  VisitFields(config, loader);
  st = loader.Finish(known.keys);
  if (!st.ok()) return st;
  config.where = loader.Locations();
  st = ParseUnits(&config);
  if (!st.ok()) return st;
  st = Validate(config);
  if (!st.ok()) return st;
  st = LoadClusterKeys(&config);
  if (!st.ok()) return st;
  return config;
}

absl::StatusOr<CheckpointEvery> ParseCheckpointEvery(const std::string& text) {
  CheckpointEvery every;
  if (text.empty()) return every;
  double value = 0;
  char unit[16] = {0};
  const int n = std::sscanf(text.c_str(), "%lf %15s", &value, unit);
  const std::string u = n == 2 ? unit : "s";
  if (n < 1 || value <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("expected '<seconds>s' or '<n> steps'; got '", text, "'"));
  }
  if (u == "s" || u == "sec" || u == "seconds") {
    every.seconds = value;
  } else if (u == "steps" || u == "step") {
    every.steps = static_cast<uint64_t>(value);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown unit '", u, "' in '", text, "' (use s or steps)"));
  }
  return every;
}

absl::StatusOr<uint64_t> ParseByteSize(const std::string& text) {
  if (text.empty()) return 0;
  double value = 0;
  char unit[16] = {0};
  const int n = std::sscanf(text.c_str(), "%lf %15s", &value, unit);
  if (n < 1 || !std::isfinite(value) || value < 0) {
    return absl::InvalidArgumentError(absl::StrCat("expected a size such as 512MiB or 8GiB; got '", text, "'"));
  }
  std::string u = n == 2 ? unit : "b";
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char ch) { return std::tolower(ch); });
  static const std::pair<const char*, double> kUnits[] = {
      {"b", 1},         {"kib", 1024.0},     {"mib", 1048576.0}, {"gib", 1073741824.0}, {"tib", 1099511627776.0},
      {"kb", 1e3},      {"mb", 1e6},         {"gb", 1e9},        {"tb", 1e12},          {"k", 1024.0},
      {"m", 1048576.0}, {"g", 1073741824.0}, {"t", 1099511627776.0}};
  for (const auto& [name, scale] : kUnits) {
    if (u == name) {
      const double bytes = value * scale;
      if (bytes >= 1.8e19) return absl::InvalidArgumentError(absl::StrCat("'", text, "' is too large"));
      return static_cast<uint64_t>(bytes);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown unit '", u, "' in '", text, "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"));
}

absl::StatusOr<Config> LoadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path, overrides);
}

std::string ConfigToJson(const Config& config) {
  Config copy = config;
  JsonWriter writer;
  VisitFields(copy, writer);
  return writer.out + "\n}\n";
}

}  // namespace sparta
