// Leadership: which of a job's schedulers leads, decided through etcd
// (cluster.coordination: etcd://...), as etcd's own election recipe does:
// a scheduler leads while its key <prefix>leader, bound to its lease,
// exists; the others stand by, watching for the key to go, and the first
// to create it again leads. A leader that dies stops renewing its lease,
// so etcd deletes the key within the lease's TTL.
//
// A leader acts on etcd only through transactions guarded by its key's
// create revision (Guard), so one that lost its lease (paused, cut off)
// and does not know it yet can change nothing. At the end of the job the
// leader writes how it ended (<prefix>ended) and gives the key up in one
// transaction; a standby that sees it exits instead of leading a job that
// is over.
//
// Not thread-safe: the scheduler's single thread uses it.
#ifndef SPARTA_SCHEDULER_LEADERSHIP_H_
#define SPARTA_SCHEDULER_LEADERSHIP_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "scheduler/etcd_client.h"

namespace sparta {

class Leadership {
 public:
  using Clock = std::chrono::steady_clock;
  // `etcd` is not owned and must outlive this. `self`: this scheduler's
  // address (the leader key's value, for people and logs). `ttl`: the
  // lease's seconds, how long a dead leader keeps its place.
  Leadership(EtcdClient* etcd, std::string prefix, std::string self, int64_t ttl);

  enum class Outcome {
    kLeading,   // this scheduler leads
    kJobEnded,  // the job ended under another leader
    kStopped,   // `stop` said so
  };
  // Stands by until this scheduler leads, the job ends (`ended`: how it
  // ended, as its leader wrote it) or `stop` returns true. Errors: etcd
  // did not answer for `give_up`.
  absl::StatusOr<Outcome> Campaign(const std::function<bool()>& stop, std::string* ended,
                                   std::chrono::duration<double> give_up);

  // The leader, at every turn of its loop: renews the lease when a third of
  // it has passed. An error means the lease may be gone (etcd said so, or
  // did not answer for as long as the lease lasts): another scheduler may
  // lead now, and this one must stop at once.
  absl::Status Renew(Clock::time_point now);

  // Makes `txn` succeed only while this scheduler leads.
  void Guard(etcd::TxnRequest* txn) const;

  // The job is over (`outcome`: "ok" or its error): tells the standbys,
  // and gives up the lead.
  absl::Status End(const std::string& outcome);

  std::string Key(const std::string& name) const { return prefix_ + name; }
  int64_t lease_ttl() const { return granted_ttl_; }

 private:
  // One look at etcd: the outcome if there is one now, nullopt to keep
  // standing by.
  absl::StatusOr<std::optional<Outcome>> TryToLead(std::string* ended);

  EtcdClient* const etcd_;
  const std::string prefix_;
  const std::string self_;
  const int64_t ttl_;
  int64_t granted_ttl_ = 0;
  int64_t lease_ = 0;
  int64_t term_ = 0;  // create revision of the leader key this scheduler made
  int64_t since_ = 0;  // the revision this scheduler started at: an `ended` older than it is another job's
  std::string leader_seen_;
  Clock::time_point renewed_;  // last successful renewal (or the grant)
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_LEADERSHIP_H_
