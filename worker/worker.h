// Worker: a training daemon. It registers with the scheduler, waits for the
// cluster view, declares the model's tables on the servers, trains on its
// share of data.train, and (worker 0, after every worker has finished
// training) evaluates data.test, then reports to the scheduler and waits for
// the end of the job. Run() is that list of steps; each step is a method,
// and what one step makes for the next is a member.
//
// Run() is called once, from main(). Internally the worker has a reader
// thread (DataLoader), the KVClient's I/O thread, the scheduler client's
// thread, and the compute threads (worker.threads), the first of which is
// the thread that called Run(). The scheduler client's and the metrics
// server's threads read the connection and the clocks under their mutexes.
#ifndef SPARTA_WORKER_WORKER_H_
#define SPARTA_WORKER_WORKER_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/daemon_metrics.h"
#include "common/scheduler_client.h"
#include "sparta.pb.h"
#include "worker/clock_gate.h"
#include "worker/compute/backend_choice.h"
#include "worker/data/data_loader.h"
#include "worker/data/readers.h"
#include "worker/driven_steps.h"
#include "worker/kv_client.h"
#include "worker/plugins.h"
#include "worker/step_gate.h"
#include "worker/training_progress.h"

namespace sparta {

class Worker {
 public:
  // `join`: the worker may take a rank past cluster.workers (--join).
  Worker(const Config& config, int rank, std::string info_file, bool join = false);

  // A worker whose model computes in its caller (the Python module):
  // `declared` only names the tables (Tables()); the caller drives the
  // training steps (Steps()) and evaluates data.test itself.
  Worker(const Config& config, int rank, std::string info_file, std::unique_ptr<Model> declared);
  ~Worker();

  // Runs the worker's part of the job. OK on a clean SHUTDOWN.
  absl::Status Run();

  // A driven worker's part of the job, in three calls:
  //   Open()         Run()'s steps up to training; false if the job had
  //                  already finished training (nothing to do);
  //   Steps()        the training loop, one batch per step;
  //   FinishSteps()  after the last batch: the report (with `eval` from the
  //                  lead worker's caller, may be null), the audit, the end
  //                  of the job; false if the job was stopped instead.
  absl::StatusOr<bool> Open();
  absl::StatusOr<DrivenSteps*> Steps();
  absl::StatusOr<bool> FinishSteps(const Trainer::EvalResult* eval);
  // Whether the job has ended with success before this worker finished
  // (sparta-ctl stop, SIGTERM): a failed request then is no failure.
  bool Stopped() const;
  // Whether this worker evaluates data.test (the lead worker), and its input.
  bool evaluates() const;
  absl::StatusOr<std::unique_ptr<DataLoader>> OpenTest();
  const pb::NodeInfo& self() const { return me_; }
  const DataSchema& schema() const { return schema_; }
  KVClient* client() { return client_.get(); }
  // A failure of the caller's that ends the job (as a worker's own does).
  absl::Status Fail(absl::Status status);

  // State of the caller's that a checkpoint must hold besides the servers'
  // rows (the Python module's parameters kept in PyTorch): once this worker
  // has paused for a checkpoint, and before it says so, `save` writes it
  // into the checkpoint's folder (being written; a cut that is only a
  // published version has none). An error fails the checkpoint. Set before
  // Open(); called on whichever thread completes the pause.
  using CheckpointHook = std::function<absl::Status(const std::string& dir)>;
  void SetCheckpointHook(CheckpointHook save) { checkpoint_hook_ = std::move(save); }
  // The checkpoint folder the job resumed from ("" if none); after Open().
  const std::string& restored_from() const { return view_.restore_from(); }

 private:
  // The steps of Run(), in order.
  absl::Status Prepare();        // inputs, readers, model and backend: errors before joining
  absl::Status Join();           // metrics, the scheduler, the view, the servers
  absl::Status DeclareTables();  // the model's tables (and the audit table) on the servers
  absl::Status OpenTraining();   // this worker's share of the data, resumed, and its clock
  // Trains on every compute thread. Sets *stopped when the job was stopped
  // (sparta-ctl stop, SIGTERM) before training ended.
  absl::StatusOr<pb::WorkerReport> Train(bool* stopped);
  absl::Status Evaluate(pb::WorkerReport* report);  // worker 0: the final model on data.test
  absl::Status Audit(pb::WorkerReport* report);     // worker 0, worker.audit: every worker's pushes counted

  // Run()'s steps after training.
  absl::Status Finish(pb::WorkerReport report, const Trainer::EvalResult* eval);
  // Compute thread `thread`'s part in the job's bookkeeping.
  Trainer::TrainHooks Hooks(int thread);
  // The report of the compute threads' results; *stopped if the job was stopped.
  absl::StatusOr<pb::WorkerReport> ReportOf(const std::vector<absl::StatusOr<Trainer::TrainResult>>& results,
                                            bool* stopped);
  static void AddEval(const Trainer::EvalResult& eval, pb::WorkerReport* report);
  // on_demand: how far this worker is into each of its units (heartbeats, PAUSED).
  void AddUnitProgress(pb::WorkerProgress* out) const;

  const Config config_;
  const int requested_rank_;
  const bool join_;
  const std::string info_file_;

  // Prepare().
  std::vector<std::string> train_files_, test_files_;
  ReaderMaker make_reader_;
  std::unique_ptr<Model> model_;
  bool driven_from_outside_ = false;
  DataSchema schema_;
  BackendChoice backend_;

  // Join(). Destroyed in reverse: the scheduler client (whose callbacks use
  // the gates and the connection) first, the metrics (whose collectors read
  // the progress and the connection) next, the context last.
  zmq::context_t context_{1};
  TrainingProgress progress_;
  std::mutex client_mu_;
  std::unique_ptr<KVClient> client_;  // set under client_mu_ (the scheduler client's thread reads it)
  std::mutex clock_mu_;
  std::unique_ptr<ClockGate> clock_;  // set under clock_mu_, by OpenTraining()
  StepGate gate_;                     // checkpoint pauses
  CheckpointHook checkpoint_hook_;
  std::mutex pause_mu_;
  std::string pause_dir_;  // under pause_mu_: the folder of the checkpoint being paused for
  DaemonMetrics metrics_;
  std::unique_ptr<SchedulerClient> scheduler_;
  pb::NodeInfo me_;
  pb::ClusterView view_;

  // DeclareTables(), OpenTraining().
  std::vector<pb::TableSpec> tables_;
  pb::TableSpec audit_;
  std::unique_ptr<DataLoader> loader_;
  // data.assignment on_demand: where the loader's work units come from.
  // Made before the scheduler client, whose heartbeats read it.
  std::unique_ptr<WorkFeed> feed_;
  // on_demand: registered after training had ended; nothing to do.
  bool too_late_ = false;
  uint64_t base_steps_ = 0;  // steps done before a restore (on_demand: the clock joined at)
  std::atomic<uint64_t> steps_done_{0};  // worker 0's steps, for storage.checkpoint_every steps
  std::unique_ptr<DrivenSteps> driven_;  // Steps()
};

}  // namespace sparta

#endif  // SPARTA_WORKER_WORKER_H_
