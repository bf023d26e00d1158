// BarrierTable: the scheduler's named barriers (BARRIER, BARRIER_RELEASE).
// Nodes of one role arrive at a barrier by name; once every node it waits
// for has arrived it is released, and each release is remembered: the ids
// it let go, the lead rank it named (workers: who evaluates) and its round.
// That memory is what keeps a job from hanging on a barrier the others have
// passed: a newcomer (on_demand: a worker started again under a lost one's
// rank) passes at once, and so does a node whose release died with the
// scheduler that sent it (it resends its barrier to the one that took over,
// naming the round it waits for).
//
// It decides; JobCoordinator counts who is live and sends. The releases are
// part of the scheduler's saved state (Save/Load); arrivals are not, as the
// nodes resend them to a scheduler that takes over.
//
// Not thread-safe: the scheduler's thread owns it.
#ifndef SPARTA_SCHEDULER_BARRIER_TABLE_H_
#define SPARTA_SCHEDULER_BARRIER_TABLE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sparta.pb.h"

namespace sparta {

class BarrierTable {
 public:
  // What Arrive() made of a node's arrival.
  enum class Arrival {
    kWaits,        // counted: the barrier is released once complete (ReleaseIfComplete)
    kLate,         // the others passed it and no new round is open: it passes now
    kReleaseLost,  // it passed this round, but its release was lost: sent again
  };

  // Node `id` of `role` arrives at barrier `name`. `resent` and `round` come
  // from its BARRIER (a resend to a scheduler that took over names the round
  // it waits for). For kLate and kReleaseLost, `*release` is the release to
  // send that node alone, and it counts as passed.
  Arrival Arrive(pb::Role role, const std::string& name, uint32_t id, bool resent, uint64_t round,
                 pb::Header* release);

  // Releases barrier `name` of `role` if at least `size` of the nodes that
  // arrived are live (`is_live`: one lost while the others waited is not
  // awaited). A workers' release names `lead_rank` (servers' name none). Returns the release to
  // send to every live node of the role, numbered with its round, or nothing
  // while the barrier still waits.
  std::optional<pb::Header> ReleaseIfComplete(pb::Role role, const std::string& name, int size, int lead_rank,
                                              const std::function<bool(uint32_t)>& is_live);

  // The barriers of `role` that nodes wait at.
  std::vector<std::string> Open(pb::Role role) const;

  // The releases, into or out of the scheduler's saved state.
  void Save(pb::SchedulerState* state) const;
  void Load(const pb::SchedulerState& state);

 private:
  using Key = std::pair<int, std::string>;  // (role, name)
  struct Release {
    std::set<uint32_t> passed;
    int lead_rank = -1;
    uint64_t round = 0;  // releases of this barrier so far
  };

  static pb::Header ReleaseMessage(pb::Role role, const std::string& name, const Release& release);

  std::map<Key, std::set<uint32_t>> waiting_;  // ids that have arrived
  std::map<Key, Release> released_;            // each barrier's last release
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_BARRIER_TABLE_H_
