#include "worker/worker.h"

#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <numeric>
#include <thread>

#include <zmq.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/daemon_options.h"
#include "common/logging.h"
#include "common/scheduler_client.h"
#include "common/status_macros.h"
#include "worker/data/data_loader.h"
#include "common/input_split.h"
#include "worker/clock_gate.h"
#include "worker/compute/backend_choice.h"
#include "worker/compute/cpu/blas_threads.h"
#include "worker/dense_cache.h"
#include "worker/driven_steps.h"
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

// data.assignment on_demand: a loader of the units `feed` hands out.
absl::StatusOr<std::unique_ptr<DataLoader>> OpenUnits(const std::vector<std::string>& files, const Config& config,
                                                      const ReaderMaker& make_reader, WorkFeed* feed) {
  SPARTA_ASSIGN_OR_RETURN(std::unique_ptr<Reader> parser, make_reader());
  uint64_t total = 0;
  for (const std::string& path : files) {
    std::error_code ec;
    total += std::filesystem::file_size(path, ec);
  }
  auto reader = std::make_unique<SplitReader>(std::vector<FileRange>(), std::move(parser), config.data.max_bad_lines);
  DataLoader::Options options{.batch_size = config.data.batch_size,
                              .epochs = config.data.epochs,
                              .queue_batches = config.data.queue_batches,
                              .expected_bytes = total / std::max(1, config.cluster.workers)};
  auto loader = std::make_unique<DataLoader>(std::move(reader), feed, options);
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

Worker::Worker(const Config& config, int rank, std::string info_file, bool join)
    : config_(config),
      requested_rank_(rank),
      join_(join),
      info_file_(std::move(info_file)),
      gate_([this](uint64_t version, uint64_t steps) {
        pb::Header paused;
        paused.set_type(pb::PAUSED);
        paused.mutable_checkpoint()->set_version(version);
        paused.mutable_checkpoint()->set_steps(steps);
        std::string dir;
        {
          std::lock_guard<std::mutex> lock(pause_mu_);
          dir = pause_dir_;
        }
        if (checkpoint_hook_ && !dir.empty()) {
          if (absl::Status st = checkpoint_hook_(dir); !st.ok()) {
            spdlog::error("checkpoint {}: saving this worker's state failed: {}", version, st.message());
            paused.set_error(std::string(st.message()));
          }
        }
        // on_demand: how far into each unit; every batch taken is trained
        // now, so this is exactly what the servers will cut.
        AddUnitProgress(paused.mutable_progress());
        scheduler_->Send(std::move(paused));
      }) {}

// A driven worker is one compute thread: its caller's.
static Config OneComputeThread(Config config) {
  config.worker.threads = 1;
  return config;
}

Worker::Worker(const Config& config, int rank, std::string info_file, std::unique_ptr<Model> declared)
    : Worker(OneComputeThread(config), rank, std::move(info_file), /*join=*/false) {
  model_ = std::move(declared);
  driven_from_outside_ = true;
}

Worker::~Worker() = default;

absl::Status Worker::Run() {
  SPARTA_ASSIGN_OR_RETURN(const bool training, Open());
  if (!training) return absl::OkStatus();
  bool stopped = false;
  SPARTA_ASSIGN_OR_RETURN(pb::WorkerReport report, Train(&stopped));
  if (stopped) return absl::OkStatus();
  return Finish(std::move(report), nullptr);
}

absl::StatusOr<bool> Worker::Open() {
  SPARTA_RETURN_IF_ERROR(Prepare());
  SPARTA_RETURN_IF_ERROR(Join());
  if (too_late_) return false;
  SPARTA_RETURN_IF_ERROR(DeclareTables());
  SPARTA_RETURN_IF_ERROR(OpenTraining());
  return true;
}

absl::Status Worker::Finish(pb::WorkerReport report, const Trainer::EvalResult* eval) {
  if (scheduler_->drained()) {
    // Drained: its units are done; it reports and the scheduler lets it go.
    scheduler_->SendWorkerDone(report);
    return scheduler_->WaitForEnd();
  }
  // Evaluate the final model: every worker's pushes must have landed first.
  SPARTA_RETURN_IF_ERROR(scheduler_->Barrier("training_done"));
  if (eval != nullptr) {
    AddEval(*eval, &report);
  } else if (!driven_from_outside_) {  // a driven worker's model computes elsewhere: its caller evaluates
    SPARTA_RETURN_IF_ERROR(Evaluate(&report));
  }
  SPARTA_RETURN_IF_ERROR(Audit(&report));
  scheduler_->SendWorkerDone(report);
  return scheduler_->WaitForEnd();
}

absl::StatusOr<DrivenSteps*> Worker::Steps() {
  if (client_ == nullptr || loader_ == nullptr) return absl::FailedPreconditionError("the worker is not open");
  if (driven_ == nullptr) driven_ = std::make_unique<DrivenSteps>(config_, client_.get(), tables_, loader_.get(),
                                                                 Hooks(/*thread=*/0));
  return driven_.get();
}

absl::StatusOr<bool> Worker::FinishSteps(const Trainer::EvalResult* eval) {
  SPARTA_ASSIGN_OR_RETURN(DrivenSteps * steps, Steps());
  auto result = steps->Finish();
  loader_->Stop();
  if (!result.ok() && !Stopped()) return Fail(result.status());
  bool stopped = false;
  SPARTA_ASSIGN_OR_RETURN(pb::WorkerReport report,
                          ReportOf({std::move(result)}, &stopped));
  if (stopped) return false;
  const absl::Status finished = Finish(std::move(report), eval);
  if (!finished.ok() && Stopped()) return false;  // stopped after its last step
  SPARTA_RETURN_IF_ERROR(finished);
  return true;
}

bool Worker::Stopped() const { return scheduler_ != nullptr && scheduler_->ended() && scheduler_->WaitForEnd().ok(); }

bool Worker::evaluates() const {
  return scheduler_ != nullptr && me_.rank() == scheduler_->lead_rank() && !test_files_.empty();
}

absl::StatusOr<std::unique_ptr<DataLoader>> Worker::OpenTest() {
  if (!evaluates()) return absl::FailedPreconditionError("only the lead worker evaluates data.test");
  return OpenInput(test_files_, 0, 1, config_, make_reader_, /*single_pass=*/true);
}

void Worker::AddUnitProgress(pb::WorkerProgress* out) const {
  if (feed_ == nullptr) return;
  for (const auto& [unit, progress] : feed_->InProgress()) (*out->mutable_units())[unit] = progress;
}

absl::Status Worker::Fail(absl::Status status) {
  scheduler_->SendFailed(status);
  return status;
}

absl::Status Worker::Prepare() {
  // Missing input is an error before the cluster waits on this worker.
  // (A followed input may be empty yet: its files arrive while the job runs.)
  SPARTA_ASSIGN_OR_RETURN(train_files_, config_.data.follow ? ListArrivedInputs(config_.data.train, "data.train")
                                                            : ExpandInputs(config_.data.train, "data.train"));
  if (!config_.data.test.empty()) {
    SPARTA_ASSIGN_OR_RETURN(test_files_, ExpandInputs(config_.data.test, "data.test"));
  }
  SPARTA_ASSIGN_OR_RETURN(make_reader_, OpenReaders(config_));
  DataSchema schema;
  {
    SPARTA_ASSIGN_OR_RETURN(std::unique_ptr<Reader> probe, make_reader_());
    schema = probe->schema();
  }
  if (model_ == nullptr) {
    SPARTA_ASSIGN_OR_RETURN(model_, OpenModel(config_, schema));
  }
  schema_ = schema;
  spdlog::info("model {} ({} tables), reader {} ({} fields, {} dense)",
               driven_from_outside_           ? std::string("computed by the caller (a Python worker)")
               : config_.model.plugin.empty() ? config_.model.name
                                              : "plugin " + config_.model.plugin,
               model_->Tables().size(), config_.data.plugin.empty() ? config_.data.format : "plugin " + config_.data.plugin,
               schema.num_fields, schema.num_dense);
  // The backend is chosen before the worker joins, so that `backend: cuda`
  // without a usable GPU fails here with its config line. (A driven
  // worker's model computes in its caller.)
  if (!driven_from_outside_) {
    SPARTA_ASSIGN_OR_RETURN(backend_, ChooseBackend(config_, *model_, ProbeGpus));
    spdlog::info("compute backend: {} ({})", backend_.cuda ? "cuda" : "cpu", backend_.reason);
  }
  if (config_.data.assignment_mode == Assignment::kOnDemand) {
    feed_ = std::make_unique<WorkFeed>([this](const std::vector<uint64_t>& held) { scheduler_->RequestWork(held); },
                                       [this] { return scheduler_->AwaitWork(); },
                                       [this](uint64_t id) { scheduler_->SendWorkDone(id); });
  }
  return absl::OkStatus();
}

absl::Status Worker::Join() {
  pb::NodeInfo self;
  self.set_role(pb::WORKER);
  self.set_rank(requested_rank_);
  self.set_join(join_);
  self.set_host(config_.cluster.host);
  self.set_pid(getpid());
  SPARTA_RETURN_IF_ERROR(metrics_.Start(config_, config_.cluster.host));
  self.set_metrics_port(metrics_.port());
  metrics_.AddCollector([this](MetricWriter& out) {
    progress_.WriteTo(out);
    std::lock_guard<std::mutex> lock(client_mu_);
    if (client_ == nullptr) return;
    client_->traffic().WriteTo(out);
    out.Gauge("sparta_inflight_requests", "Request parts sent to servers and not yet answered.",
              static_cast<double>(client_->pending_parts()));
  });
  SchedulerClient::Callbacks callbacks{
      .on_end = [this](const absl::Status& status) {
        gate_.Close();
        {
          std::lock_guard<std::mutex> lock(clock_mu_);
          if (clock_) clock_->Close();
        }
        // An abort (or a lost scheduler) must wake a trainer blocked on the
        // servers; so must a stop (the servers are leaving too).
        std::lock_guard<std::mutex> lock(client_mu_);
        if (client_) client_->Abort(status.ok() ? absl::CancelledError("the job has ended") : status);
      },
      .on_control = [this](const pb::Header& h) {
        if (h.type() == pb::WORK_GRANT) {
          std::lock_guard<std::mutex> lock(clock_mu_);
          if (clock_) clock_->Rebase(h.clock());
          return;
        }
        if (h.type() == pb::PAUSE) {
          std::lock_guard<std::mutex> lock(pause_mu_);
          pause_dir_ = h.checkpoint().dir();
        }
        if (h.type() == pb::CLOCK || h.type() == pb::PAUSE) {
          std::lock_guard<std::mutex> lock(clock_mu_);
          if (clock_ && h.type() == pb::CLOCK) clock_->OnMinClock(h.clock());
          // A worker waiting for the slowest must take the pause where it is.
          if (clock_ && h.type() == pb::PAUSE) {
            gate_.RequestPause(h.checkpoint().version());
            clock_->Wake();
            return;
          }
        }
        if (h.type() == pb::PAUSE) gate_.RequestPause(h.checkpoint().version());
        if (h.type() == pb::RESUME) gate_.Resume();
        if (h.type() == pb::CLUSTER_VIEW) {
          std::lock_guard<std::mutex> lock(client_mu_);
          if (client_) client_->UpdateView(h.view());
        }
      },
      .on_heartbeat = [this](pb::Header* h) {
        *h->mutable_progress() = progress_.Snapshot();
        AddUnitProgress(h->mutable_progress());
      }};
  scheduler_ = std::make_unique<SchedulerClient>(&context_, config_, self, std::move(callbacks));
  if (auto st = scheduler_->Register(); !st.ok()) {
    // on_demand: a worker that comes after training ended is let go.
    if (feed_ != nullptr && scheduler_->ended() && scheduler_->WaitForEnd().ok()) {
      spdlog::info("the job had already finished training; nothing to do");
      too_late_ = true;
      return absl::OkStatus();
    }
    return st;
  }
  me_ = scheduler_->self();
  SetLogProcessName(absl::StrCat("worker-", me_.rank()));
  metrics_.SetIdentity("worker", me_.rank());
  if (!config_.log.metrics_dir.empty()) {
    SPARTA_RETURN_IF_ERROR(progress_.OpenCsv(absl::StrCat(config_.log.metrics_dir, "/worker-", me_.rank(), ".csv")));
  }
  WriteInfoFile(info_file_, me_);
  SPARTA_ASSIGN_OR_RETURN(view_, scheduler_->WaitForView());
  spdlog::info("registered as id {}; cluster view epoch {} with {} servers", me_.id(), view_.epoch(),
               config_.cluster.servers);
  {
    std::lock_guard<std::mutex> lock(client_mu_);
    client_ = std::make_unique<KVClient>(&context_, config_, me_.id(), view_);
    if (scheduler_->ended()) client_->Abort(scheduler_->WaitForEnd());
  }
  SPARTA_RETURN_IF_ERROR(client_->Start());
  // A view published while the client was being built reached nobody.
  client_->UpdateView(scheduler_->view());
  return absl::OkStatus();
}

absl::Status Worker::DeclareTables() {
  tables_ = ModelTableSpecs(*model_, config_);
  if (UsesDeepDenseDefault(config_)) {
    spdlog::info("optimizer.dense_name is not set: dnn's dense tables (its MLP layers) train with {} at {} unless "
                 "optimizer.dense_learning_rate says otherwise (README: Models and optimizers)",
                 kDeepDenseOptimizer, config_.optimizer.dense_learning_rate > 0 ? config_.optimizer.dense_learning_rate
                                                                                 : kDeepDenseLearningRate);
  }
  for (const auto& spec : tables_) {
    if (auto st = client_->CreateTable(spec); !st.ok()) return Fail(st);
  }
  if (config_.worker.audit) {
    // One counter per worker, which each of its steps adds 1 to: at the
    // end it must equal the worker's steps (every push applied once).
    audit_.set_id(static_cast<uint32_t>(tables_.size()));
    audit_.set_name("sparta.audit");
    audit_.set_dim(1);
    audit_.mutable_optimizer()->set_type(pb::OptimizerSpec::SGD);
    audit_.mutable_optimizer()->set_learning_rate(1.0f);
    if (auto st = client_->CreateTable(audit_); !st.ok()) return Fail(st);
  }
  return absl::OkStatus();
}

absl::Status Worker::OpenTraining() {
  auto loader = feed_ != nullptr ? OpenUnits(train_files_, config_, make_reader_, feed_.get())
                                 : OpenInput(train_files_, me_.rank(), config_.cluster.workers, config_, make_reader_,
                                             /*single_pass=*/false);
  if (!loader.ok()) return Fail(loader.status());
  loader_ = *std::move(loader);
  const int threads = config_.worker.threads;
  base_steps_ = me_.rank() < view_.worker_steps_size() ? view_.worker_steps(me_.rank()) : 0;
  steps_done_ = base_steps_;
  gate_.Configure(threads, base_steps_);
  progress_.SetBaseSteps(base_steps_);
  // on_demand: a worker that joins late counts its steps from the slowest
  // live worker's clock, with no batch to skip (its units say what to read).
  if (base_steps_ > 0 && feed_ == nullptr) {
    // Resuming from a checkpoint: the batches its steps trained on are read
    // and dropped, so that this worker goes on where it was cut.
    auto skipped = SkipBatches(loader_.get(), base_steps_);
    if (!skipped.ok()) return Fail(skipped.status());
    spdlog::info("resumed after step {} (epoch {})", base_steps_, *skipped + 1);
  }
  const Consistency mode = config_.worker.consistency_mode;
  std::lock_guard<std::mutex> lock(clock_mu_);
  // After a restore every worker goes on from its saved step: the slowest
  // is the least of them, not 0.
  uint64_t slowest = base_steps_;
  for (uint64_t steps : view_.worker_steps()) slowest = std::min(slowest, steps);
  // The scheduler relays the slowest worker's clock; while it is silent
  // (paused, restarting) that clock is old news.
  const auto fresh = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(3 * config_.cluster.heartbeat_interval));
  SchedulerClient* scheduler = scheduler_.get();
  clock_ = std::make_unique<ClockGate>(
      mode == Consistency::kAsp ? -1 : mode == Consistency::kBsp ? 0 : config_.worker.staleness, threads,
      base_steps_ / threads, slowest / threads, config_.cluster.heartbeat_interval,
      [scheduler](uint64_t c) {
        pb::Header h;
        h.set_type(pb::CLOCK);
        h.set_clock(c);
        scheduler->Send(std::move(h));
      },
      [scheduler, fresh] { return scheduler->HeardWithin(fresh); });
  return absl::OkStatus();
}

Trainer::TrainHooks Worker::Hooks(int thread) {
  const int threads = config_.worker.threads;
  Trainer::TrainHooks hooks;
  hooks.progress = &progress_;
  hooks.gate = &gate_;
  hooks.clock = clock_.get();
  hooks.first_step = base_steps_ / threads;
  hooks.feed = feed_.get();
  hooks.thread = thread;
  hooks.log_progress = thread == 0;
  if (config_.worker.audit) {
    hooks.audit = &audit_;
    hooks.audit_key = me_.rank();
  }
  // storage.checkpoint_every "<n> steps" counts worker 0's steps (all threads').
  const uint64_t every_steps = config_.storage.every.steps;
  if (me_.rank() == 0 && every_steps > 0) {
    hooks.after_step = [this, every_steps](uint64_t) {
      if (steps_done_.fetch_add(1) % every_steps != every_steps - 1) return;
      pb::Header request;
      request.set_type(pb::CHECKPOINT_REQUEST);
      scheduler_->Send(std::move(request));
    };
  }
  return hooks;
}

absl::StatusOr<pb::WorkerReport> Worker::Train(bool* stopped) {
  const int threads = config_.worker.threads;
  // The compute threads share the connection, the loader, the model and
  // the dense tables (DenseCache); each runs its own trainer.
  DenseCache cache(client_.get(), tables_);
  // Several compute threads: one BLAS thread each (see blas_threads.h).
  const int blas = threads > 1 ? UseBlasThreads(1) : BlasThreads();
  spdlog::info("{} compute thread(s), {} BLAS thread(s) each{}", threads, blas,
               BlasThreadsChosen() ? " (from OPENBLAS_NUM_THREADS or OMP_NUM_THREADS)" : "");
  std::vector<absl::StatusOr<Trainer::TrainResult>> results(threads, absl::UnknownError("not run"));
  std::once_flag failed;
  auto train = [&](int i) {
    auto runner = NewStepRunner(backend_, config_, model_.get(), tables_);
    if (!runner.ok()) {
      results[i] = runner.status();
      std::call_once(failed, [&] { scheduler_->SendFailed(results[i].status()); });
      return;
    }
    Trainer trainer(config_, client_.get(), runner->get(), tables_, &cache);
    results[i] = trainer.Train(loader_.get(), Hooks(i));
    // One thread's failure ends the job, which wakes the others.
    if (!results[i].ok()) std::call_once(failed, [&] { scheduler_->SendFailed(results[i].status()); });
  };
  {
    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i) pool.emplace_back(train, i);
    train(0);
    for (auto& t : pool) t.join();
  }
  loader_->Stop();
  SPARTA_ASSIGN_OR_RETURN(pb::WorkerReport report, ReportOf(results, stopped));
  if (threads > 1 && !*stopped) {
    spdlog::info("training done on {} threads: {} examples in {:.2f} s ({:.0f} ex/s); dense tables pulled {} times, "
                 "shared {} times",
                 threads, report.train_examples(), report.train_seconds(),
                 report.train_examples() / std::max(report.train_seconds(), 1e-9), cache.pulled(), cache.shared());
  }
  return report;
}

absl::StatusOr<pb::WorkerReport> Worker::ReportOf(const std::vector<absl::StatusOr<Trainer::TrainResult>>& results,
                                                  bool* stopped) {
  pb::WorkerReport report;
  uint64_t steps = base_steps_;
  for (const auto& r : results) {
    if (!r.ok() && Stopped()) {
      spdlog::info("the job was stopped (sparta-ctl stop or SIGTERM) after {} steps", progress_.Snapshot().steps());
      *stopped = true;
      return report;
    }
    if (!r.ok()) return r.status();  // the scheduler has heard of it
    report.set_train_examples(report.train_examples() + r->examples);
    report.set_train_seconds(std::max(report.train_seconds(), r->seconds));
    report.set_train_loss(report.train_loss() + r->last_epoch_loss / results.size());
    steps += r->steps;
  }
  report.set_steps(steps);
  // A wrong glob or an empty file must not pass for a trained model.
  // (on_demand: the scheduler checks the input as a whole; a worker may
  // rightly get no unit.)
  if (steps == 0 && report.train_examples() == 0 && !config_.data.allow_empty && feed_ == nullptr) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "worker-", me_.rank(), " found no training example in its share of data.train (",
        DescribeShare(train_files_, me_.rank(), config_.cluster.workers), "; ", loader_->bad_lines(),
        " malformed lines); check the paths and data.format, or set data.allow_empty: true if some workers may "
        "have no data")));
  }
  report.set_bad_lines(loader_->bad_lines());
  report.set_max_staleness(clock_->max_staleness());
  report.set_mean_staleness(clock_->mean_staleness());
  spdlog::info("staleness ({}): max {} steps, mean {:.2f} steps ahead of the slowest worker",
               config_.worker.consistency, clock_->max_staleness(), clock_->mean_staleness());
  return report;
}

absl::Status Worker::Evaluate(pb::WorkerReport* report) {
  // The lead worker (0, unless it was lost with on_demand) evaluates.
  if (me_.rank() != scheduler_->lead_rank() || test_files_.empty()) return absl::OkStatus();
  auto test = OpenInput(test_files_, 0, 1, config_, make_reader_, /*single_pass=*/true);
  if (!test.ok()) return Fail(test.status());
  auto runner = NewStepRunner(backend_, config_, model_.get(), tables_);
  if (!runner.ok()) return Fail(runner.status());
  Trainer evaluator(config_, client_.get(), runner->get(), tables_);
  auto eval = evaluator.Evaluate(test->get(), config_.eval.predictions_out);
  if (!eval.ok()) return Fail(eval.status());
  AddEval(*eval, report);
  return absl::OkStatus();
}

void Worker::AddEval(const Trainer::EvalResult& eval, pb::WorkerReport* report) {
  spdlog::info("test: AUC {:.5f} logloss {:.5f} on {} rows", eval.auc, eval.logloss, eval.rows);
  report->set_has_eval(true);
  report->set_auc(eval.auc);
  report->set_logloss(eval.logloss);
  report->set_test_rows(eval.rows);
}

absl::Status Worker::Audit(pb::WorkerReport* report) {
  if (me_.rank() != scheduler_->lead_rank() || !config_.worker.audit) return absl::OkStatus();
  std::vector<uint64_t> ranks(config_.cluster.workers);
  std::iota(ranks.begin(), ranks.end(), 0);
  std::vector<float> counts(ranks.size());
  if (auto st = client_->Wait(client_->Pull(audit_.id(), 1, ranks, counts.data())); !st.ok()) return Fail(st);
  for (float c : counts) report->add_audit_counts(static_cast<uint64_t>(c));
  return absl::OkStatus();
}

}  // namespace sparta
