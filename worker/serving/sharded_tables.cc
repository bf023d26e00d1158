#include "worker/serving/sharded_tables.h"

#include <unistd.h>

#include <cstring>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/dense_cache.h"

namespace sparta {

ShardedTables::ShardedTables(const Config& config, std::vector<pb::TableSpec> specs)
    : config_(config), specs_(std::move(specs)) {}

absl::StatusOr<std::shared_ptr<ShardedTables>> ShardedTables::Connect(
    const Config& job, const std::vector<pb::TableSpec>& specs, int rank,
    std::function<void(const absl::Status&)> on_end) {
  Config config = job;
  // Rows travel as they are stored: half-precision pulls would make served
  // predictions differ from the offline ones.
  config.wire.value_type = WireDtype::kFp32;
  // A pull that the cluster cannot answer in a request's time is an error.
  config.worker.request_timeout = config.serving.deadline;
  std::shared_ptr<ShardedTables> tables(new ShardedTables(config, specs));
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
            std::lock_guard<std::mutex> lock(self->client_mu_);
            if (h.type() == pb::CLUSTER_VIEW && self->client_) self->client_->UpdateView(h.view());
          }};
  tables->scheduler_ = std::make_unique<SchedulerClient>(&tables->context_, config, node, std::move(callbacks));
  SPARTA_RETURN_IF_ERROR(tables->scheduler_->Register());
  SPARTA_ASSIGN_OR_RETURN(const pb::ClusterView view, tables->scheduler_->WaitForView());
  if (view.restore_from().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the scheduler at ", config.cluster.scheduler, " serves no model version: is it a serving cluster's "
        "(sparta-scheduler --serving)?"));
  }
  tables->version_ = view.restore_version();
  {
    std::lock_guard<std::mutex> lock(tables->client_mu_);
    tables->client_ = std::make_unique<KVClient>(&tables->context_, config, tables->scheduler_->self().id(), view);
    if (tables->scheduler_->ended()) tables->client_->Abort(tables->scheduler_->WaitForEnd());
  }
  SPARTA_RETURN_IF_ERROR(tables->client_->Start());
  // A view published while the client was being built reached nobody.
  tables->client_->UpdateView(tables->scheduler_->view());

  // The caches share serving.cache by row bytes: a table of wider rows
  // gets more bytes, as each of its rows costs more.
  uint64_t row_bytes = 0;
  for (const pb::TableSpec& spec : specs) {
    if (spec.kind() != pb::TableSpec::DENSE) row_bytes += spec.dim() * sizeof(float);
  }
  tables->dense_.resize(specs.size());
  tables->caches_.resize(specs.size());
  for (size_t t = 0; t < specs.size(); ++t) {
    const pb::TableSpec& spec = specs[t];
    if (spec.kind() == pb::TableSpec::DENSE) {
      const std::vector<uint64_t> blocks = DenseBlockKeys(spec);
      tables->dense_[t].resize(blocks.size() * spec.dim());
      KVClient::Ticket pull = tables->client_->Pull(spec.id(), spec.dim(), blocks, tables->dense_[t].data());
      if (absl::Status st = tables->client_->Wait(pull); !st.ok()) {
        return absl::Status(st.code(), absl::StrCat("dense table '", spec.name(), "' of the serving cluster: ",
                                                    st.message()));
      }
    } else {
      const uint64_t share = row_bytes == 0 ? 0 : config.serving.cache_bytes * (spec.dim() * sizeof(float)) / row_bytes;
      tables->caches_[t] = std::make_unique<RowCache>(spec.dim(), share);
    }
  }
  int servers = 0;
  for (const pb::NodeInfo& n : view.nodes()) servers += n.role() == pb::SERVER;
  spdlog::info("serving model version {} from a serving cluster of {} servers (scheduler {}, checkpoint {}); rows "
               "cached up to serving.cache ({})",
               tables->version_, servers, config.cluster.scheduler, view.restore_from(), config.serving.cache);
  return tables;
}

ShardedTables::~ShardedTables() {
  // The scheduler client's thread calls into the KVClient: it stops first;
  // both go before the context.
  scheduler_.reset();
  client_.reset();
}

uint64_t ShardedTables::rows() const {
  uint64_t n = 0;
  for (size_t t = 0; t < specs_.size(); ++t) {
    if (caches_[t]) n += caches_[t]->rows();
    n += dense_[t].size() / std::max<uint32_t>(1, specs_[t].dim());
  }
  return n;
}

uint64_t ShardedTables::cache_hits() const {
  uint64_t n = 0;
  for (const auto& c : caches_) n += c ? c->hits() : 0;
  return n;
}

uint64_t ShardedTables::cache_misses() const {
  uint64_t n = 0;
  for (const auto& c : caches_) n += c ? c->misses() : 0;
  return n;
}

absl::Status ShardedTables::Gather(size_t t, std::span<const uint64_t> keys, std::vector<float>* out) const {
  const pb::TableSpec& spec = specs_[t];
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
  KVClient::Ticket pull = client_->Pull(spec.id(), dim, missing, rows.data());
  if (absl::Status st = client_->Wait(pull); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("rows of table '", spec.name(), "' from the serving cluster: ",
                                                st.message()));
  }
  for (size_t j = 0; j < missing.size(); ++j) {
    const float* row = rows.data() + j * dim;
    std::memcpy(out->data() + where[j] * dim, row, dim * sizeof(float));
    cache.Insert(missing[j], row);
  }
  return absl::OkStatus();
}

}  // namespace sparta
