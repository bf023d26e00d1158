#include "worker/worker.h"

#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <numeric>
#include <thread>

#include <cblas.h>
#include <zmq.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/daemon_options.h"
#include "common/logging.h"
#include "common/scheduler_client.h"
#include "common/status_macros.h"
#include "worker/data/data_loader.h"
#include "worker/data/input_split.h"
#include "worker/clock_gate.h"
#include "worker/compute/backend_choice.h"
#include "worker/dense_cache.h"
#include "common/daemon_metrics.h"
#include "worker/kv_client.h"
#include "worker/model_tables.h"
#include "worker/training_progress.h"
#include "worker/plugins.h"
#include "worker/step_gate.h"
#include "worker/trainer.h"

namespace sparta {
namespace {

absl::StatusOr<std::unique_ptr<DataLoader>> OpenInput(const std::vector<std::string>& files, int rank, int workers,
                                                      const Config& config, const ReaderMaker& make_reader,
                                                      bool single_pass) {
  SPARTA_ASSIGN_OR_RETURN(auto ranges, SplitInput(files, rank, workers));
  SPARTA_ASSIGN_OR_RETURN(std::unique_ptr<Reader> parser, make_reader());
  auto reader = std::make_unique<SplitReader>(std::move(ranges), std::move(parser), config.data.max_bad_lines);
  DataLoader::Options options{.batch_size = config.data.batch_size,
                              .epochs = single_pass ? 1 : config.data.epochs,
                              .queue_batches = config.data.queue_batches};
  auto loader = std::make_unique<DataLoader>(std::move(reader), options);
  loader->Start();
  return loader;
}

// "a.txt, bytes 0-100 of b.txt": what a worker's share of the input is.
std::string DescribeShare(const std::vector<std::string>& files, int rank, int workers) {
  auto ranges = SplitInput(files, rank, workers);
  if (!ranges.ok()) return std::string(ranges.status().message());
  if (ranges->empty()) return "no file";
  std::vector<std::string> parts;
  for (const FileRange& r : *ranges) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(r.path, ec);
    parts.push_back(!ec && r.begin == 0 && r.end >= size ? r.path
                                                          : absl::StrCat("bytes ", r.begin, "-", r.end, " of ", r.path));
  }
  return absl::StrJoin(parts, ", ");
}

// Reads and drops `n` batches; returns the 0-based epoch reached.
absl::StatusOr<int> SkipBatches(DataLoader* loader, uint64_t n) {
  int epoch = 0;
  for (uint64_t i = 0; i < n; ++i) {
    SPARTA_ASSIGN_OR_RETURN(std::unique_ptr<Batch> batch, loader->Next());
    if (batch == nullptr) break;
    epoch = batch->epoch;
  }
  return epoch;
}

}  // namespace

Worker::Worker(const Config& config, int rank, std::string info_file)
    : config_(config), requested_rank_(rank), info_file_(std::move(info_file)) {}

absl::Status Worker::Run() {
  // Missing input is an error before the cluster waits on this worker.
  SPARTA_ASSIGN_OR_RETURN(auto train_files, ExpandInputs(config_.data.train, "data.train"));
  std::vector<std::string> test_files;
  if (!config_.data.test.empty()) {
    SPARTA_ASSIGN_OR_RETURN(test_files, ExpandInputs(config_.data.test, "data.test"));
  }
  SPARTA_ASSIGN_OR_RETURN(ReaderMaker make_reader, OpenReaders(config_));
  DataSchema schema;
  {
    SPARTA_ASSIGN_OR_RETURN(std::unique_ptr<Reader> probe, make_reader());
    schema = probe->schema();
  }
  SPARTA_ASSIGN_OR_RETURN(auto model, OpenModel(config_, schema));
  spdlog::info("model {} ({} tables), reader {} ({} fields, {} dense)",
               config_.model.plugin.empty() ? config_.model.name : "plugin " + config_.model.plugin,
               model->Tables().size(), config_.data.plugin.empty() ? config_.data.format : "plugin " + config_.data.plugin,
               schema.num_fields, schema.num_dense);
  // The backend is chosen before the worker joins, so that `backend: cuda`
  // without a usable GPU fails here with its config line.
  SPARTA_ASSIGN_OR_RETURN(const BackendChoice backend, ChooseBackend(config_, *model, ProbeGpus()));
  spdlog::info("compute backend: {} ({})", backend.cuda ? "cuda" : "cpu", backend.reason);

  zmq::context_t context(1);
  pb::NodeInfo self;
  self.set_role(pb::WORKER);
  self.set_rank(requested_rank_);
  self.set_host(config_.cluster.host);
  self.set_pid(getpid());
  std::unique_ptr<KVClient> client;
  std::mutex client_mu;
  TrainingProgress progress;
  // Declared after what its collectors read, so it stops serving first.
  DaemonMetrics metrics;
  SPARTA_RETURN_IF_ERROR(metrics.Start(config_, config_.cluster.host));
  self.set_metrics_port(metrics.port());
  metrics.AddCollector([&](MetricWriter& out) {
    progress.WriteTo(out);
    std::lock_guard<std::mutex> lock(client_mu);
    if (client == nullptr) return;
    client->traffic().WriteTo(out);
    out.Gauge("sparta_inflight_requests", "Request parts sent to servers and not yet answered.",
              static_cast<double>(client->pending_parts()));
  });
  std::unique_ptr<ClockGate> clock;  // set before training; read by the scheduler client's thread
  std::mutex clock_mu;
  SchedulerClient* scheduler_ptr = nullptr;
  StepGate gate([&](uint64_t version, uint64_t steps) {
    pb::Header paused;
    paused.set_type(pb::PAUSED);
    paused.mutable_checkpoint()->set_version(version);
    paused.mutable_checkpoint()->set_steps(steps);
    scheduler_ptr->Send(std::move(paused));
  });
  SchedulerClient scheduler(&context, config_, self,
                            {.on_end = [&](const absl::Status& status) {
                               gate.Close();
                               {
                                 std::lock_guard<std::mutex> lock(clock_mu);
                                 if (clock) clock->Close();
                               }
                               // An abort (or a lost scheduler) must wake a trainer blocked on the
                               // servers; so must a stop (the servers are leaving too).
                               std::lock_guard<std::mutex> lock(client_mu);
                               if (client) client->Abort(status.ok() ? absl::CancelledError("the job has ended") : status);
                             },
                             .on_control = [&](const pb::Header& h) {
                               if (h.type() == pb::CLOCK || h.type() == pb::PAUSE) {
                                 std::lock_guard<std::mutex> lock(clock_mu);
                                 if (clock && h.type() == pb::CLOCK) clock->OnMinClock(h.clock());
                                 // A worker waiting for the slowest must take the pause where it is.
                                 if (clock && h.type() == pb::PAUSE) {
                                   gate.RequestPause(h.checkpoint().version());
                                   clock->Wake();
                                   return;
                                 }
                               }
                               if (h.type() == pb::PAUSE) gate.RequestPause(h.checkpoint().version());
                               if (h.type() == pb::RESUME) gate.Resume();
                               if (h.type() == pb::CLUSTER_VIEW) {
                                 std::lock_guard<std::mutex> lock(client_mu);
                                 if (client) client->UpdateView(h.view());
                               }
                             },
                             .on_heartbeat = [&](pb::Header* h) { *h->mutable_progress() = progress.Snapshot(); }});
  scheduler_ptr = &scheduler;
  SPARTA_RETURN_IF_ERROR(scheduler.Register());
  const pb::NodeInfo me = scheduler.self();
  SetLogProcessName(absl::StrCat("worker-", me.rank()));
  metrics.SetIdentity("worker", me.rank());
  if (!config_.log.metrics_dir.empty()) {
    SPARTA_RETURN_IF_ERROR(progress.OpenCsv(absl::StrCat(config_.log.metrics_dir, "/worker-", me.rank(), ".csv")));
  }
  WriteInfoFile(info_file_, me);
  SPARTA_ASSIGN_OR_RETURN(const pb::ClusterView view, scheduler.WaitForView());
  spdlog::info("registered as id {}; cluster view epoch {} with {} servers", me.id(), view.epoch(),
               config_.cluster.servers);
  {
    std::lock_guard<std::mutex> lock(client_mu);
    client = std::make_unique<KVClient>(&context, config_, me.id(), view);
    if (scheduler.ended()) client->Abort(scheduler.WaitForEnd());
  }
  SPARTA_RETURN_IF_ERROR(client->Start());
  // A view published while the client was being built reached nobody.
  client->UpdateView(scheduler.view());

  // The worker's own failures (bad data, a failed request) end the job at once.
  auto fail = [&](absl::Status status) {
    scheduler.SendFailed(status);
    return status;
  };
  const std::vector<pb::TableSpec> tables = ModelTableSpecs(*model, config_);
  for (const auto& spec : tables) {
    if (auto st = client->CreateTable(spec); !st.ok()) return fail(st);
  }
  pb::TableSpec audit;
  if (config_.worker.audit) {
    audit.set_id(static_cast<uint32_t>(tables.size()));
    audit.set_name("sparta.audit");
    audit.set_dim(1);
    audit.mutable_optimizer()->set_type(pb::OptimizerSpec::SGD);
    audit.mutable_optimizer()->set_learning_rate(1.0f);
    if (auto st = client->CreateTable(audit); !st.ok()) return fail(st);
  }
  auto loader = OpenInput(train_files, me.rank(), config_.cluster.workers, config_, make_reader, /*single_pass=*/false);
  if (!loader.ok()) return fail(loader.status());
  const int threads = config_.worker.threads;
  const uint64_t base_steps = me.rank() < view.worker_steps_size() ? view.worker_steps(me.rank()) : 0;
  gate.Configure(threads, base_steps);
  progress.SetBaseSteps(base_steps);
  if (base_steps > 0) {
    // Resuming from a checkpoint: the batches its steps trained on are read
    // and dropped, so that this worker goes on where it was cut.
    auto skipped = SkipBatches(loader->get(), base_steps);
    if (!skipped.ok()) return fail(skipped.status());
    spdlog::info("resumed after step {} (epoch {})", base_steps, *skipped + 1);
  }
  {
    const Consistency mode = config_.worker.consistency_mode;
    std::lock_guard<std::mutex> lock(clock_mu);
    // After a restore every worker goes on from its saved step: the slowest
    // is the least of them, not 0.
    uint64_t slowest = base_steps;
    for (uint64_t steps : view.worker_steps()) slowest = std::min(slowest, steps);
    // The scheduler relays the slowest worker's clock; while it is silent
    // (paused, restarting) that clock is old news.
    const auto fresh = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(3 * config_.cluster.heartbeat_interval));
    clock = std::make_unique<ClockGate>(
        mode == Consistency::kAsp ? -1 : mode == Consistency::kBsp ? 0 : config_.worker.staleness, threads, base_steps / threads,
        slowest / threads, config_.cluster.heartbeat_interval,
        [&](uint64_t c) {
          pb::Header h;
          h.set_type(pb::CLOCK);
          h.set_clock(c);
          scheduler.Send(std::move(h));
        },
        [&scheduler, fresh] { return scheduler.HeardWithin(fresh); });
  }
  Trainer::TrainHooks hooks;
  hooks.progress = &progress;
  hooks.gate = &gate;
  hooks.clock = clock.get();
  hooks.first_step = base_steps / threads;
  if (config_.worker.audit) {
    hooks.audit = &audit;
    hooks.audit_key = me.rank();
  }
  // storage.checkpoint_every "<n> steps" counts worker 0's steps (all threads').
  const uint64_t every_steps = config_.storage.every.steps;
  std::atomic<uint64_t> steps_done{base_steps};
  if (me.rank() == 0 && every_steps > 0) {
    hooks.after_step = [&](uint64_t) {
      if (steps_done.fetch_add(1) % every_steps != every_steps - 1) return;
      pb::Header request;
      request.set_type(pb::CHECKPOINT_REQUEST);
      scheduler.Send(std::move(request));
    };
  }
  // The compute threads share the connection, the loader, the model and
  // the dense tables (DenseCache); each runs its own trainer.
  DenseCache cache(client.get(), tables);
  // Parallel compute threads each calling a multi-threaded BLAS would run
  // threads x cores BLAS threads on `cores` cores; one BLAS thread each.
  if (threads > 1) openblas_set_num_threads(1);
  std::vector<absl::StatusOr<Trainer::TrainResult>> results(threads, absl::UnknownError("not run"));
  std::once_flag failed;
  auto train = [&](int i) {
    auto runner = NewStepRunner(backend, config_, model.get(), tables);
    if (!runner.ok()) {
      results[i] = runner.status();
      std::call_once(failed, [&] { scheduler.SendFailed(results[i].status()); });
      return;
    }
    Trainer trainer(config_, client.get(), runner->get(), tables, &cache);
    Trainer::TrainHooks mine = hooks;
    mine.thread = i;
    mine.log_progress = i == 0;
    results[i] = trainer.Train(loader->get(), mine);
    // One thread's failure ends the job, which wakes the others.
    if (!results[i].ok()) std::call_once(failed, [&] { scheduler.SendFailed(results[i].status()); });
  };
  {
    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i) pool.emplace_back(train, i);
    train(0);
    for (auto& t : pool) t.join();
  }
  (*loader)->Stop();
  pb::WorkerReport report;
  uint64_t steps = base_steps;
  for (const auto& r : results) {
    if (!r.ok() && scheduler.ended() && scheduler.WaitForEnd().ok()) {
      spdlog::info("the job was stopped (sparta-ctl stop or SIGTERM) after {} steps", progress.Snapshot().steps());
      return absl::OkStatus();
    }
    if (!r.ok()) return r.status();
    report.set_train_examples(report.train_examples() + r->examples);
    report.set_train_seconds(std::max(report.train_seconds(), r->seconds));
    report.set_train_loss(report.train_loss() + r->last_epoch_loss / threads);
    steps += r->steps;
  }
  report.set_steps(steps);
  // A wrong glob or an empty file must not pass for a trained model.
  if (steps == 0 && report.train_examples() == 0 && !config_.data.allow_empty) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "worker-", me.rank(), " found no training example in its share of data.train (",
        DescribeShare(train_files, me.rank(), config_.cluster.workers), "; ", (*loader)->bad_lines(),
        " malformed lines); check the paths and data.format, or set data.allow_empty: true if some workers may "
        "have no data")));
  }
  if (threads > 1) {
    spdlog::info("training done on {} threads: {} examples in {:.2f} s ({:.0f} ex/s); dense tables pulled {} times, "
                 "shared {} times",
                 threads, report.train_examples(), report.train_seconds(),
                 report.train_examples() / std::max(report.train_seconds(), 1e-9), cache.pulled(), cache.shared());
  }
  report.set_bad_lines((*loader)->bad_lines());
  report.set_max_staleness(clock->max_staleness());
  report.set_mean_staleness(clock->mean_staleness());
  spdlog::info("staleness ({}): max {} steps, mean {:.2f} steps ahead of the slowest worker",
               config_.worker.consistency, clock->max_staleness(), clock->mean_staleness());
  // Evaluate the final model: every worker's pushes must have landed first.
  if (auto st = scheduler.Barrier("training_done"); !st.ok()) return st;
  if (me.rank() == 0 && !test_files.empty()) {
    auto test = OpenInput(test_files, 0, 1, config_, make_reader, /*single_pass=*/true);
    if (!test.ok()) return fail(test.status());
    auto runner = NewStepRunner(backend, config_, model.get(), tables);
    if (!runner.ok()) return fail(runner.status());
    Trainer evaluator(config_, client.get(), runner->get(), tables);
    auto eval = evaluator.Evaluate(test->get(), config_.eval.predictions_out);
    if (!eval.ok()) return fail(eval.status());
    spdlog::info("test: AUC {:.5f} logloss {:.5f} on {} rows", eval->auc, eval->logloss, eval->rows);
    report.set_has_eval(true);
    report.set_auc(eval->auc);
    report.set_logloss(eval->logloss);
    report.set_test_rows(eval->rows);
  }
  if (me.rank() == 0 && config_.worker.audit) {
    std::vector<uint64_t> ranks(config_.cluster.workers);
    std::iota(ranks.begin(), ranks.end(), 0);
    std::vector<float> counts(ranks.size());
    if (auto st = client->Wait(client->Pull(audit.id(), 1, ranks, counts.data())); !st.ok()) return fail(st);
    for (float c : counts) report.add_audit_counts(static_cast<uint64_t>(c));
  }
  scheduler.SendWorkerDone(report);
  return scheduler.WaitForEnd();
}

}  // namespace sparta
