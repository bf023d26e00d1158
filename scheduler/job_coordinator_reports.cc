// JobCoordinator's reports of the job: the status sparta-ctl and /metrics
// read while it runs, and the summary written when it ends. What they read
// is the coordinator's state; they change none of it. (A part of
// job_coordinator.cc, kept apart as RocksDB keeps DBImpl's parts.)
#include <algorithm>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/message.h"
#include "scheduler/job_coordinator.h"

namespace sparta {

pb::JobSummary JobCoordinator::BuildSummary() const {
  pb::JobSummary out;
  out.set_status(preempted_ ? "preempted" : !outcome_.ok() ? "failed" : stopped_ ? "stopped" : "ok");
  if (!outcome_.ok()) out.set_error(std::string(outcome_.message()));
  out.set_model(config_.model.name);
  out.set_optimizer(config_.optimizer.name);
  out.set_servers(config_.cluster.servers);
  out.set_workers(config_.cluster.workers);
  out.set_consistency(config_.worker.consistency);
  // Per worker: its final report, else (a job stopped or failed before it
  // finished) what its last heartbeat said.
  std::map<int, pb::WorkerProgress> progress;
  for (const auto& node : members_.nodes()) {
    // on_demand: a lost worker's examples are counted apart (lost_examples_).
    if (node.info.role() == pb::WORKER && !(work_ && node.dead)) progress[node.info.rank()] = node.progress;
  }
  double examples = 0, seconds = 0, loss = 0, bad_lines = 0;
  const pb::WorkerReport* eval = nullptr;
  // Workers that joined (--join) may have ranks past cluster.workers.
  for (int rank = 0; rank < members_.expected(pb::WORKER); ++rank) {
    auto it = reports_.find(rank);
    if (it == reports_.end()) {
      // Its clock (steps with every push acknowledged, sent as they finish)
      // is fresher than its last heartbeat.
      const uint64_t clock = clocks_.clock(rank);
      const uint64_t acknowledged = clock == ClockTable::kFinished ? 0 : clock * config_.worker.threads;
      out.add_worker_steps(static_cast<double>(std::max(progress[rank].steps(), acknowledged)));
      out.add_max_staleness(0);
      out.add_mean_staleness(0);
      examples += static_cast<double>(progress[rank].examples());
      // It trained from the start until the end (or now), as far as the
      // scheduler can tell: without this a stopped job (an online one
      // runs until stopped) would show 0 examples/s.
      if (running_since_) {
        seconds = std::max(seconds, std::chrono::duration<double>(ended_at_.value_or(Clock::now()) -
                                                                  *running_since_).count());
      }
      continue;
    }
    const pb::WorkerReport& r = it->second;
    examples += static_cast<double>(r.train_examples());
    bad_lines += static_cast<double>(r.bad_lines());
    seconds = std::max(seconds, r.train_seconds());
    loss += r.train_loss() / reports_.size();
    if (r.has_eval()) eval = &r;
    out.add_worker_steps(static_cast<double>(r.steps()));
    out.add_max_staleness(static_cast<double>(r.max_staleness()));
    out.add_mean_staleness(r.mean_staleness());
  }
  if (work_) {
    out.set_workers_lost(workers_lost_);
    out.set_examples_retrained(static_cast<double>(work_->examples_retrained()));
    out.set_work_units(static_cast<double>(work_->units_done()));
    examples += lost_examples_;
  }
  out.set_train_examples(examples);
  out.set_train_seconds(seconds);
  out.set_examples_per_sec(seconds > 0 ? examples / seconds : 0);
  out.set_train_loss(loss);
  out.set_bad_lines(bad_lines);
  // Each server's rows as its flush reported them, else (a job stopped or
  // failed before the flush) as its last heartbeat did.
  double rows = 0;
  for (const auto& [rank, stats] : flushed_) rows += static_cast<double>(stats.rows());
  for (const auto& node : members_.nodes()) {
    if (node.info.role() == pb::SERVER && !node.dead && !flushed_.contains(node.info.rank())) {
      rows += static_cast<double>(node.stats.rows());
    }
  }
  out.set_server_rows(rows);
  if (eval != nullptr) {
    out.set_auc(eval->auc());
    out.set_logloss(eval->logloss());
    out.set_test_rows(static_cast<double>(eval->test_rows()));
  }
  out.set_dropped_messages(static_cast<double>(dropped_messages_));
  out.set_checkpoint_version(static_cast<uint32_t>(checkpoints_.last_version()));
  out.set_checkpoint_seconds(checkpoints_.last_seconds());
  out.set_max_clock_spread(static_cast<double>(clocks_.max_spread()));
  // The lead worker (0, unless on_demand lost it) reads the audit table
  // (worker.audit) at the end.
  for (const auto& [rank, report] : reports_) {
    if (report.audit_counts_size() == 0) continue;
    for (uint64_t c : report.audit_counts()) out.add_audit_counts(static_cast<double>(c));
    break;
  }
  if (!restore_from_.empty()) out.set_restored_from(restore_from_);
  *out.mutable_lost_shards() = lost_.lost_shards();
  *out.mutable_dead_servers() = lost_.dead_servers();
  if (lost_.has_rollback_checkpoint()) {
    out.set_rollback_checkpoint(lost_.rollback_checkpoint());
    *out.mutable_rollback_steps() = lost_.rollback_steps();
  }
  return out;
}

pb::ClusterStatus JobCoordinator::BuildStatus(Clock::time_point now) const {
  static const char* kPhases[] = {"registering", "running", "flushing", "done"};
  pb::ClusterStatus status;
  status.set_phase(stopped_ && phase_ == Phase::kRunning ? "stopping" : kPhases[static_cast<int>(phase_)]);
  status.set_epoch(epoch_);
  status.set_uptime_seconds(std::chrono::duration<double>(now - started_).count());
  status.set_num_shards(config_.cluster.num_shards);
  status.set_consistency(config_.worker.consistency);
  status.set_checkpoint_version(checkpoints_.last_version());
  status.set_checkpoint_running(checkpoints_.busy());
  status.set_model_version(checkpoints_.published_model_version());
  if (config_.serving.cluster) status.set_serving_version(follower_ ? follower_->announced() : restore_version_);
  status.set_dropped_messages(dropped_messages_);
  status.set_scheduler_metrics_port(metrics_port_);
  status.set_servers_wanted(static_cast<uint32_t>(scaling_.wanted()));
  status.set_shards_moving(static_cast<uint32_t>(shard_map_.moving()));
  status.set_shards_handing_off(static_cast<uint32_t>(shard_map_.handing_off()));
  // Shards each live server leads and follows, and how far its copies lag
  // their primaries (update batches applied, from the heartbeats).
  const std::vector<uint32_t>& owners = shard_map_.owners();
  std::map<int, const pb::ServerStats*> stats_by_rank;
  for (const auto& node : members_.nodes()) {
    if (!node.dead && node.info.role() == pb::SERVER) stats_by_rank[node.info.rank()] = &node.stats;
  }
  auto applied = [&](int rank, uint32_t shard) -> uint64_t {
    auto it = stats_by_rank.find(rank);
    if (it == stats_by_rank.end() || shard >= static_cast<uint32_t>(it->second->shard_applied_size())) return 0;
    return it->second->shard_applied(shard);
  };
  std::map<int, uint32_t> primaries, replicas;
  std::map<int, uint64_t> lag, rows_held;
  const std::vector<uint64_t> shard_rows = scaling_.ShardRows();
  for (uint32_t s = 0; s < owners.size(); ++s) {
    ++primaries[owners[s]];
    rows_held[owners[s]] += shard_rows[s];
    const uint64_t lead = applied(owners[s], s);
    for (uint32_t r : shard_map_.replicas(s)) {
      ++replicas[r];
      rows_held[r] += shard_rows[s];
      const uint64_t have = applied(r, s);
      lag[r] = std::max(lag[r], lead > have ? lead - have : 0);
    }
  }
  uint64_t slowest = std::numeric_limits<uint64_t>::max(), fastest = 0;
  for (const auto& node : members_.nodes()) {
    pb::NodeStatus* n = status.add_nodes();
    *n->mutable_info() = node.info;
    n->set_dead(node.dead);
    n->set_heartbeat_age_seconds(std::chrono::duration<double>(now - node.last_seen).count());
    if (node.info.role() == pb::SERVER) {
      *n->mutable_server() = node.stats;
      n->mutable_server()->clear_shard_applied();  // per-shard detail stays internal
      n->mutable_server()->clear_shard_rows();
      if (!node.dead) {
        n->set_primaries(primaries[node.info.rank()]);
        n->set_replicas(replicas[node.info.rank()]);
        n->set_replication_lag(lag[node.info.rank()]);
        n->set_rows_held(rows_held[node.info.rank()]);
      }
    } else if (node.info.role() == pb::WORKER) {
      *n->mutable_worker() = node.progress;
      slowest = std::min(slowest, node.progress.steps());
      fastest = std::max(fastest, node.progress.steps());
    }
  }
  status.set_clock_min(fastest >= slowest ? slowest : 0);
  status.set_clock_max(fastest);
  return status;
}

}  // namespace sparta
