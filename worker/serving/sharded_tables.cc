#include "worker/serving/sharded_tables.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/dense_cache.h"

namespace sparta {

// One model version as the serving cluster holds it: read at that version.
class ShardedTables::Version : public ModelParameters {
 public:
  Version(const ShardedTables* link, uint64_t version) : link_(link), version_(version) {}

  uint64_t version() const override { return version_; }
  uint64_t rows() const override {
    uint64_t n = 0;
    for (size_t t = 0; t < link_->specs_.size(); ++t) {
      if (caches_[t]) n += caches_[t]->rows();
      n += dense_[t].size() / std::max<uint32_t>(1, link_->specs_[t].dim());
    }
    return n;
  }
  bool is_dense(size_t t) const override { return link_->specs_[t].kind() == pb::TableSpec::DENSE; }
  std::span<const float> Dense(size_t t) const override { return dense_[t]; }

  absl::Status Gather(size_t t, std::span<const uint64_t> keys, std::vector<float>* out) const override {
    const pb::TableSpec& spec = link_->specs_[t];
    const uint32_t dim = spec.dim();
    RowCache& cache = *caches_[t];
    out->resize(keys.size() * dim);
    std::vector<uint64_t> missing;
    std::vector<size_t> where;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (cache.Lookup(keys[i], out->data() + i * dim)) continue;
      missing.push_back(keys[i]);
      where.push_back(i);
    }
    if (missing.empty()) return absl::OkStatus();
    std::vector<float> rows(missing.size() * dim);
    KVClient& client = *link_->client_;
    KVClient::Ticket pull = client.Pull(spec.id(), dim, missing, rows.data(), /*clock=*/0, version_);
    if (absl::Status st = client.Wait(pull); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("rows of table '", spec.name(), "' at model version ", version_,
                                                  " from the serving cluster: ", st.message()));
    }
    for (size_t j = 0; j < missing.size(); ++j) {
      const float* row = rows.data() + j * dim;
      std::memcpy(out->data() + where[j] * dim, row, dim * sizeof(float));
      cache.Insert(missing[j], row);
    }
    return absl::OkStatus();
  }

  uint64_t hits() const {
    uint64_t n = 0;
    for (const auto& c : caches_) n += c ? c->hits() : 0;
    return n;
  }
  uint64_t misses() const {
    uint64_t n = 0;
    for (const auto& c : caches_) n += c ? c->misses() : 0;
    return n;
  }

  std::vector<std::vector<float>> dense_;           // by table: the dense tables' floats
  std::vector<std::unique_ptr<RowCache>> caches_;  // by table: the sparse tables' caches

 private:
  const ShardedTables* const link_;
  const uint64_t version_;
};

ShardedTables::ShardedTables(const Config& config, std::vector<pb::TableSpec> specs)
    : config_(config), specs_(std::move(specs)) {}

absl::StatusOr<std::shared_ptr<ShardedTables>> ShardedTables::Connect(
    const Config& job, const std::vector<pb::TableSpec>& specs, int rank,
    std::function<void(const absl::Status&)> on_end, VersionCallback on_version) {
  Config config = job;
  // Rows travel as they are stored: half-precision pulls would make served
  // predictions differ from the offline ones.
  config.wire.value_type = WireDtype::kFp32;
  // A pull that the cluster cannot answer in a request's time is an error.
  config.worker.request_timeout = config.serving.deadline;
  std::shared_ptr<ShardedTables> tables(new ShardedTables(config, specs));
  tables->on_version_ = std::move(on_version);
  ShardedTables* self = tables.get();
  pb::NodeInfo node;
  node.set_role(pb::SERVING);
  node.set_rank(rank);
  node.set_host(config.cluster.host);
  node.set_pid(static_cast<uint32_t>(getpid()));
  SchedulerClient::Callbacks callbacks{
      .on_end =
          [self, on_end](const absl::Status& status) {
            // A request waiting on servers that are gone must not wait any
            // longer. An orderly end (this front-end's own leave, or the
            // cluster's stop) lets requests in progress finish, each within
            // its deadline.
            std::lock_guard<std::mutex> lock(self->client_mu_);
            if (self->client_ && !status.ok()) self->client_->Abort(status);
            if (on_end) on_end(status);
          },
      .on_control =
          [self](const pb::Header& h) {
            if (h.type() == pb::CLUSTER_VIEW) {
              self->Want(h.view().model_version());
              std::lock_guard<std::mutex> lock(self->client_mu_);
              if (self->client_) self->client_->UpdateView(h.view());
            } else {
              self->Want(h.model_version());  // MODEL_VERSION, or a heartbeat echo repeating it
            }
          }};
  tables->scheduler_ = std::make_unique<SchedulerClient>(&tables->context_, config, node, std::move(callbacks));
  SPARTA_RETURN_IF_ERROR(tables->scheduler_->Register());
  SPARTA_ASSIGN_OR_RETURN(const pb::ClusterView view, tables->scheduler_->WaitForView());
  if (view.restore_from().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the scheduler at ", config.cluster.scheduler, " serves no model version: is it a serving cluster's "
        "(sparta-scheduler --serving)?"));
  }
  tables->Want(view.model_version() != 0 ? view.model_version() : view.restore_version());
  {
    std::lock_guard<std::mutex> lock(tables->client_mu_);
    tables->client_ = std::make_unique<KVClient>(&tables->context_, config, tables->scheduler_->self().id(), view);
    if (tables->scheduler_->ended()) tables->client_->Abort(tables->scheduler_->WaitForEnd());
  }
  SPARTA_RETURN_IF_ERROR(tables->client_->Start());
  // A view published while the client was being built reached nobody.
  tables->client_->UpdateView(tables->scheduler_->view());

  // The version announced may move on while this one is made: the servers
  // then hold it no more, and the newer one is made instead. And the
  // servers restore their checkpoint on this same view, answering nothing
  // until it is in (minutes for a large model, seconds for a table far
  // over server.memory_limit): no request waits on this first version, so
  // a pull that times out meanwhile (serving.deadline) is sent again, for
  // up to the job's worker.request_timeout.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(job.worker.request_timeout);
  std::shared_ptr<const Version> first;
  bool waited = false;
  int moved_on = 0;  // versions that moved on while being made
  while (first == nullptr) {
    uint64_t wanted = 0;
    {
      std::lock_guard<std::mutex> lock(tables->mu_);
      wanted = tables->wanted_;
    }
    auto made = tables->MakeVersion(wanted);
    if (made.ok()) {
      first = *std::move(made);
    } else if (absl::IsDeadlineExceeded(made.status()) && std::chrono::steady_clock::now() < give_up) {
      if (!waited) {
        spdlog::info("waiting for the servers, which may still be restoring: {}", std::string(made.status().message()));
        waited = true;
      }
    } else if (!absl::IsOutOfRange(made.status()) || moved_on++ >= 10) {
      return made.status();
    }
  }
  {
    std::lock_guard<std::mutex> lock(tables->mu_);
    tables->current_ = first;
  }
  int servers = 0;
  for (const pb::NodeInfo& n : view.nodes()) servers += n.role() == pb::SERVER;
  spdlog::info("serving model version {} from a serving cluster of {} servers (scheduler {}, checkpoint {}); rows "
               "cached up to serving.cache ({})",
               first->version(), servers, config.cluster.scheduler, view.restore_from(), config.serving.cache);
  tables->switcher_ = std::thread([self] { self->Switch(); });
  return tables;
}

ShardedTables::~ShardedTables() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // The switcher's pulls fail at once once the client is aborted.
  {
    std::lock_guard<std::mutex> lock(client_mu_);
    if (client_) client_->Abort(absl::CancelledError("the front-end is stopping"));
  }
  if (switcher_.joinable()) switcher_.join();
  // The scheduler client's thread calls into the KVClient: it stops first;
  // both go before the context.
  scheduler_.reset();
  client_.reset();
}

absl::StatusOr<std::shared_ptr<const ShardedTables::Version>> ShardedTables::MakeVersion(uint64_t version) {
  auto made = std::make_shared<Version>(this, version);
  // The caches share serving.cache by row bytes: a table of wider rows
  // gets more bytes, as each of its rows costs more.
  uint64_t row_bytes = 0;
  for (const pb::TableSpec& spec : specs_) {
    if (spec.kind() != pb::TableSpec::DENSE) row_bytes += spec.dim() * sizeof(float);
  }
  made->dense_.resize(specs_.size());
  made->caches_.resize(specs_.size());
  for (size_t t = 0; t < specs_.size(); ++t) {
    const pb::TableSpec& spec = specs_[t];
    if (spec.kind() == pb::TableSpec::DENSE) {
      const std::vector<uint64_t> blocks = DenseBlockKeys(spec);
      made->dense_[t].resize(blocks.size() * spec.dim());
      KVClient::Ticket pull = client_->Pull(spec.id(), spec.dim(), blocks, made->dense_[t].data(), 0, version);
      if (absl::Status st = client_->Wait(pull); !st.ok()) {
        return absl::Status(st.code(), absl::StrCat("dense table '", spec.name(), "' at model version ", version,
                                                    " from the serving cluster: ", st.message()));
      }
    } else {
      const uint64_t share = row_bytes == 0 ? 0 : config_.serving.cache_bytes * (spec.dim() * sizeof(float)) / row_bytes;
      made->caches_[t] = std::make_unique<RowCache>(spec.dim(), share);
    }
  }
  return std::shared_ptr<const Version>(std::move(made));
}

void ShardedTables::Want(uint64_t version) {
  if (version == 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (version <= wanted_) return;
    wanted_ = version;
  }
  cv_.notify_all();
}

void ShardedTables::Switch() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || wanted_ > current_->version(); });
    if (stopping_) return;
    const uint64_t wanted = wanted_;
    lock.unlock();
    auto made = MakeVersion(wanted);
    lock.lock();
    if (stopping_) return;
    if (!made.ok()) {
      // Moved on again (OutOfRange), or the cluster is failing: wait for
      // news, or a moment, and try the newest.
      spdlog::warn("model version {} not made: {}", wanted, std::string(made.status().message()));
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_ || wanted_ > wanted; });
      continue;
    }
    const std::shared_ptr<const Version> old = current_;
    current_ = *made;
    cv_.notify_all();  // batches waiting in AwaitNewer()
    retired_hits_.fetch_add(old->hits(), std::memory_order_relaxed);
    retired_misses_.fetch_add(old->misses(), std::memory_order_relaxed);
    lock.unlock();
    if (on_version_) on_version_(*made);
    lock.lock();
  }
}

std::shared_ptr<const ModelParameters> ShardedTables::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

std::shared_ptr<const ModelParameters> ShardedTables::AwaitNewer(uint64_t version,
                                                               std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return stopping_ || current_->version() > version; });
  return current_->version() > version ? current_ : nullptr;
}

uint64_t ShardedTables::cache_hits() const {
  std::shared_ptr<const Version> v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    v = current_;
  }
  return retired_hits_.load(std::memory_order_relaxed) + (v ? v->hits() : 0);
}

uint64_t ShardedTables::cache_misses() const {
  std::shared_ptr<const Version> v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    v = current_;
  }
  return retired_misses_.load(std::memory_order_relaxed) + (v ? v->misses() : 0);
}

}  // namespace sparta
