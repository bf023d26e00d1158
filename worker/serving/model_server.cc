#include "worker/serving/model_server.h"

#include <httplib.h>

#include <chrono>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_files.h"
#include "common/delta_files.h"
#include "common/status_macros.h"
#include "worker/compute/cpu/blas_threads.h"
#include "worker/model_tables.h"
#include "worker/plugins.h"
#include "worker/serving/held_version.h"
#include "common/version_plan.h"

namespace sparta {

std::string ServedModelName(const Config& config) {
  if (!config.serving.name.empty()) return config.serving.name;
  if (config.model.plugin.empty()) return config.model.name;
  std::string stem = std::filesystem::path(config.model.plugin).stem().string();
  if (stem.rfind("lib", 0) == 0 && stem.size() > 3) stem = stem.substr(3);
  return stem;
}

ModelServer::ModelServer(const Config& config, int rank) : config_(config), rank_(rank) {}

absl::StatusOr<std::unique_ptr<ModelServer>> ModelServer::Start(const Config& config, int rank) {
  std::unique_ptr<ModelServer> server(new ModelServer(config, rank));
  SPARTA_RETURN_IF_ERROR(server->Load());
  SPARTA_RETURN_IF_ERROR(server->Listen());
  return server;
}

absl::StatusOr<std::string> ModelServer::ResolveModelDir() const {
  if (config_.serving.model.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_.source, ": key 'serving.model' is not set: name a checkpoint folder, or 'latest' for the newest "
                        "checkpoint under storage.path"));
  }
  if (!config_.serving.follows_latest) return config_.serving.model;
  if (config_.storage.path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_.Where("serving.model"), ": key 'serving.model' is latest, which needs storage.path"));
  }
  auto resolved = ResolveRestore(config_.storage.path, "latest");
  if (!resolved.ok()) {
    return absl::NotFoundError(
        absl::StrCat(config_.Where("serving.model"), ": key 'serving.model': ", resolved.status().message()));
  }
  return *resolved;
}

void ModelServer::Follow() {
  const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(config_.serving.poll_interval));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, interval, [this] { return stopping_; })) {
    lock.unlock();
    Advance().IgnoreError();  // logged; the version served goes on
    lock.lock();
  }
}

absl::Status ModelServer::Advance() {
  // Only an embedded server follows versions: they are all ServingTables.
  std::shared_ptr<const ServingTables> current = std::static_pointer_cast<const ServingTables>(Current());
  // A checkpoint that failed to load is not read again at every look.
  std::vector<uint64_t> checkpoints;
  for (uint64_t v : ListCheckpoints(config_.storage.path)) {
    if (!unreadable_.contains(v)) checkpoints.push_back(v);
  }
  const VersionPlan plan = PlanVersions(current ? std::optional<uint64_t>(current->version()) : std::nullopt,
                                        checkpoints, ListDeltas(config_.storage.path));
  std::shared_ptr<const ServingTables> next;
  absl::Status st;
  switch (plan.start) {
    case VersionPlan::Start::kNothing:
      return absl::OkStatus();
    case VersionPlan::Start::kCurrent:
      next = current;
      break;
    case VersionPlan::Start::kCheckpoint: {
      const std::string dir = (std::filesystem::path(CheckpointsDir(config_.storage.path)) /
                               CheckpointName(plan.checkpoint)).string();
      auto loaded = ServingTables::FromCheckpoint(dir, specs_, config_);
      if (!loaded.ok()) {
        // Deleted by storage.keep while it was read, most likely: the next
        // one will do.
        unreadable_.insert(plan.checkpoint);
        failed_loads_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("model version in {} not loaded: {}", dir, std::string(loaded.status().message()));
        return loaded.status();
      }
      next = *std::move(loaded);
      break;
    }
    case VersionPlan::Start::kEmpty: {
      auto manifest = ReadDeltaManifest(plan.deltas.front().dir);
      if (manifest.ok()) {
        auto empty = ServingTables::Empty(plan.deltas.front().dir,
                                          {manifest->tables().begin(), manifest->tables().end()}, specs_, config_);
        if (empty.ok()) next = *std::move(empty);
        st = empty.status();
      } else {
        st = manifest.status();
      }
      break;
    }
  }
  for (const DeltaRef& delta : plan.deltas) {
    if (!st.ok()) break;
    auto applied = next->WithDelta(delta.dir);
    if (applied.ok()) {
      next = *std::move(applied);
      deltas_.fetch_add(1, std::memory_order_relaxed);
    } else {
      st = applied.status();
    }
  }
  if (!st.ok()) {
    // A delta pruned under a checkpoint while it was read: the next look
    // starts from that checkpoint.
    failed_loads_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("model versions not applied: {}", std::string(st.message()));
  }
  if (next == nullptr || next->version() == 0 || (current && next->version() <= current->version())) return st;
  {
    std::lock_guard<std::mutex> guard(mu_);
    tables_ = next;
  }
  loads_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("now serving model version {} (was {})", next->version(), current ? current->version() : 0);
  return st;
}

absl::Status ModelServer::Load() {
  // Following a job (latest), it serves the newest version it can reach
  // from its checkpoints and published deltas; before the first one it is
  // alive but not ready (/readyz answers 503).
  const bool sharded = config_.serving.shards > 0;
  // A serving cluster has resolved serving.model for its servers already.
  auto dir = sharded ? absl::StatusOr<std::string>("") : ResolveModelDir();
  const bool follow = !sharded && config_.serving.follows_latest;
  if (!dir.ok() && !(follow && absl::IsNotFound(dir.status()))) return dir.status();
  SPARTA_ASSIGN_OR_RETURN(ReaderMaker make_reader, OpenReaders(config_));
  DataSchema schema;
  {
    SPARTA_ASSIGN_OR_RETURN(std::unique_ptr<Reader> probe, make_reader());
    schema = probe->schema();
  }
  SPARTA_ASSIGN_OR_RETURN(model_, OpenModel(config_, schema));
  // Batches are small and the compute threads are the parallelism: BLAS's
  // own threads would only wake up, contend for the cores and add their
  // wake-up time to the tail (a dnn's p99 at 1,000 requests/s was 15 ms).
  UseBlasThreads(1);
  specs_ = ModelTableSpecs(*model_, config_);
  if (sharded) {
    SPARTA_ASSIGN_OR_RETURN(
        sharded_, ShardedTables::Connect(
                      config_, specs_, rank_,
                      [this](const absl::Status& status) {
                        if (!status.ok()) spdlog::error("the serving cluster is gone: {}", std::string(status.message()));
                        cluster_ended_.store(true, std::memory_order_release);
                      },
                      // A newer version every server holds (serving.model: latest).
                      [this](std::shared_ptr<const ModelParameters> next) {
                        uint64_t was = 0;
                        {
                          std::lock_guard<std::mutex> guard(mu_);
                          if (tables_ != nullptr) was = tables_->version();
                          if (tables_ == nullptr || next->version() > was) tables_ = next;
                        }
                        loads_.fetch_add(1, std::memory_order_relaxed);
                        deltas_.fetch_add(1, std::memory_order_relaxed);
                        spdlog::info("now serving model version {} (was {})", next->version(), was);
                      }));
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (tables_ == nullptr) tables_ = sharded_->current();
    }
    loads_.fetch_add(1, std::memory_order_relaxed);
  } else if (follow) {
    // A model that does not match the job's tables is the config's error.
    if (absl::Status st = Advance(); absl::IsFailedPrecondition(st)) return st;
    if (Current() == nullptr) {
      spdlog::info("no model version under {} yet; serving once the first is published", config_.storage.path);
    }
  } else {
    SPARTA_ASSIGN_OR_RETURN(tables_, ServingTables::FromCheckpoint(*dir, specs_, config_));
    loads_ = 1;
  }
  for (int t = 0; t < config_.serving.threads; ++t) predictors_.push_back(std::make_unique<Predictor>(model_.get(), specs_));
  // A serving cluster that moved two versions on while a batch was
  // computed refuses its rows: the batch is computed again on a newer one.
  VersionSource source{.current = [this] { return Current(); }};
  if (sharded_ != nullptr) {
    source.await_newer = [this](uint64_t version, std::chrono::milliseconds timeout) {
      return sharded_->AwaitNewer(version, timeout);
    };
  }
  batcher_ = std::make_unique<RequestBatcher>(
      RequestBatcher::Options{.threads = config_.serving.threads,
                              .max_batch = static_cast<size_t>(config_.serving.max_batch),
                              .max_delay = std::chrono::microseconds(config_.serving.max_delay_us)},
      [this, source](int thread, std::span<const Example* const> examples) -> absl::StatusOr<RequestBatcher::Scored> {
        std::shared_ptr<const ModelParameters> tables = Current();
        if (tables == nullptr) return absl::UnavailableError("no model version is loaded yet");
        return ScoreOnHeldVersion(
            std::move(tables),
            [&](const ModelParameters& version) { return predictors_[thread]->Predict(version, examples); }, source,
            std::chrono::milliseconds(static_cast<int64_t>(config_.serving.deadline * 1000)));
      });
  api_ = std::make_unique<PredictApi>(
      PredictApi::Options{.model_name = ServedModelName(config_),
                          .default_deadline = std::chrono::duration<double>(config_.serving.deadline),
                          .data_format = config_.data.plugin.empty() ? config_.data.format : std::string()},
      std::move(make_reader), batcher_.get(), [this] { return version(); });
  metrics_.SetCommonLabels({{"role", "serve"}, {"model", ServedModelName(config_)}});
  metrics_.AddCollector([this](MetricWriter& out) {
    api_->WriteMetrics(out);
    out.Counter("sparta_serving_model_loads_total", "Model versions loaded (the first, then each newer one).",
                static_cast<double>(loads_.load(std::memory_order_relaxed)));
    out.Counter("sparta_serving_model_load_failures_total", "Newer model versions that failed to load.",
                static_cast<double>(failed_loads_.load(std::memory_order_relaxed)));
    const auto served = Current();
    out.Gauge("sparta_serving_model_rows", "Rows of the model version being served (sparse rows and dense blocks).",
              served ? static_cast<double>(served->rows()) : 0.0);
    out.Counter("sparta_serving_deltas_applied_total", "Published deltas (serving.publish_every) applied.",
                static_cast<double>(deltas_.load(std::memory_order_relaxed)));
    if (sharded_ != nullptr) {
      out.Counter("sparta_serving_cache_hits_total", "Sparse rows found in the front-end's row cache (serving.cache).",
                  static_cast<double>(sharded_->cache_hits()));
      out.Counter("sparta_serving_cache_misses_total", "Sparse rows not in the row cache: pulled from the servers.",
                  static_cast<double>(sharded_->cache_misses()));
    }
    if (zmq_ != nullptr) {
      out.Counter("sparta_serving_malformed_messages_total", "Messages dropped on the ZeroMQ endpoint.",
                  static_cast<double>(zmq_->malformed()));
    }
  });
  if (follow) follower_ = std::thread([this] { Follow(); });
  return absl::OkStatus();
}

absl::Status ModelServer::Listen() {
  http_ = std::make_unique<httplib::Server>();
  http_->set_payload_max_length(config_.serving.max_body_bytes);
  // An answer leaves as headers, then body: with Nagle's algorithm the body
  // would wait for the client's delayed ACK of the headers (40 ms).
  http_->set_tcp_nodelay(true);
  // A keep-alive connection holds its thread until it closes: with fewer
  // threads than clients, the others wait for a connection to time out.
  const int connections = config_.serving.connections;
  http_->new_task_queue = [connections] { return new httplib::ThreadPool(connections); };
  http_->set_keep_alive_max_count(1 << 20);
  auto send = [](httplib::Response& res, const HttpReply& reply) {
    res.status = reply.status;
    res.set_content(reply.body, reply.content_type.c_str());
  };
  http_->Post(R"(/v1/models/([^/:]+):predict)", [this, send](const httplib::Request& req, httplib::Response& res) {
    send(res, api_->Predict(req.matches[1].str(), req.body));
  });
  http_->Get(R"(/v1/models/([^/:]+))", [this, send](const httplib::Request& req, httplib::Response& res) {
    send(res, api_->ModelStatus(req.matches[1].str()));
  });
  http_->Get("/healthz", [this, send](const httplib::Request&, httplib::Response& res) { send(res, api_->Health()); });
  http_->Get("/readyz", [this, send](const httplib::Request&, httplib::Response& res) { send(res, api_->Ready()); });
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.Render(), "text/plain; version=0.0.4");
  });
  // What httplib answers by itself (an unknown path, a body over
  // serving.max_body) also says, in JSON, what was wrong.
  http_->set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                        httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string what = res.status == 413 ? absl::StrCat("the body is over serving.max_body (",
                                                        config_.serving.max_body, ")")
                       : res.status == 404 ? absl::StrCat("no such path: ", req.path,
                                                          " (try POST /v1/models/", api_->model_name(), ":predict)")
                                           : absl::StrCat("HTTP status ", res.status);
    res.set_content(ErrorBody(what), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  const std::string& host = config_.cluster.host;
  port_ = config_.serving.port;
  if (port_ == 0) {
    port_ = http_->bind_to_any_port(host);
    if (port_ < 0) return absl::UnavailableError(absl::StrCat("sparta-serve: cannot listen on ", host));
  } else if (!http_->bind_to_port(host, port_)) {
    return absl::UnavailableError(absl::StrCat(config_.Where("serving.port"), ": key 'serving.port': cannot listen on ",
                                               host, ":", port_, " (in use?)"));
  }
  if (config_.serving.zmq_port >= 0) {
    SPARTA_ASSIGN_OR_RETURN(zmq_, ZmqPredictEndpoint::Start(config_, api_.get(), [this] { return version(); }));
    spdlog::info("and over ZeroMQ on tcp://{}:{}", host, zmq_->port());
  }
  http_thread_ = std::thread([this] { http_->listen_after_bind(); });
  spdlog::info("serving model '{}' version {} on http://{}:{}/v1/models/{}:predict ({} compute threads, batches of "
               "up to {}, waiting up to {} us)",
               api_->model_name(), version(), host, port_, api_->model_name(), config_.serving.threads,
               config_.serving.max_batch, config_.serving.max_delay_us);
  return absl::OkStatus();
}

void ModelServer::Stop() {
  if (http_ != nullptr) http_->stop();
  if (http_thread_.joinable()) http_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (follower_.joinable()) follower_.join();
}

ModelServer::~ModelServer() {
  Stop();
  // The compute threads use the predictors, and answer ZeroMQ requests
  // through the endpoint: they finish (or answer Unavailable) while both
  // are still there. The endpoint's thread may be handing a request to
  // the batcher this moment: the door closes first.
  if (api_ != nullptr) api_->StopTaking();
  batcher_.reset();
  zmq_.reset();
  // A serving cluster's connection threads call back into this object:
  // they stop while all of it is still here.
  {
    std::lock_guard<std::mutex> lock(mu_);
    tables_.reset();
  }
  sharded_.reset();
}

}  // namespace sparta
