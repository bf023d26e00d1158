// Membership: the scheduler's table of registered nodes, their ids, ranks and
// the time each was last heard from.
//
// Ids are unique per job (the scheduler is id 0); ranks are dense per role
// (servers 0..S-1, workers 0..W-1). Not thread-safe: owned by the scheduler's
// event loop.
#ifndef SPARTA_SCHEDULER_MEMBERSHIP_H_
#define SPARTA_SCHEDULER_MEMBERSHIP_H_

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "sparta.pb.h"

namespace sparta {

class Membership {
 public:
  using Clock = std::chrono::steady_clock;

  struct Node {
    pb::NodeInfo info;
    std::string routing_id;  // the node's identity on the scheduler's ROUTER
    Clock::time_point last_seen;
    bool dead = false;         // declared dead; never comes back under this id
    pb::ServerStats stats;     // servers: as of the last heartbeat
    // Servers, for JobCoordinator: since when its heartbeats have named an
    // older view than the current one (zero: up to date), and when that
    // view was last sent to it again.
    Clock::time_point behind_since;
    Clock::time_point view_resent;
    pb::WorkerProgress progress;  // workers: as of the last heartbeat
  };

  Membership(int servers, int workers);

  // Adds a node. Honors a requested rank if it is free (a dead node's rank
  // is free again); otherwise assigns the lowest free rank of its role.
  // Errors: bad role, rank taken or out of range, role full.
  // A node that asks to join (NodeInfo.join) with no free rank gets a new
  // one: the job's count of its role grows by one; one that joins under a
  // rank past the count grows it to that rank.
  absl::StatusOr<pb::NodeInfo> Add(const pb::NodeInfo& requested, const std::string& routing_id,
                                   Clock::time_point now);

  // (Serving front-ends, role SERVING, are any number: each takes the rank
  // it asks for if free, else the lowest free one, and no count waits for
  // them: complete() is about servers and workers.)

  // Re-adds a node from the scheduler's saved state (a restarted scheduler).
  void Restore(const pb::NodeInfo& info, const std::string& routing_id, bool dead, Clock::time_point now);

  // The node that owns `routing_id`, or nullptr.
  Node* FindByRoutingId(const std::string& routing_id);
  const Node* FindById(uint32_t id) const;
  bool Has(const std::string& routing_id) const { return by_routing_id_.count(routing_id) != 0; }

  bool complete() const { return joined(pb::SERVER) == servers_ && joined(pb::WORKER) == workers_; }
  int joined(pb::Role role) const;
  int expected(pb::Role role) const { return role == pb::SERVER ? servers_ : workers_; }

  // The first live node silent for longer than `timeout`, if any.
  Node* FindSilent(Clock::time_point now, Clock::duration timeout);

  // Ranks of the live servers, ascending.
  std::vector<uint32_t> LiveServers() const;

  // What is missing, for a start-up timeout message ("server ranks 1, 2; ...").
  std::string DescribeMissing() const;

  const std::vector<Node>& nodes() const { return nodes_; }

 private:
  absl::StatusOr<pb::NodeInfo> AddFrontEnd(const pb::NodeInfo& requested, const std::string& routing_id,
                                           Clock::time_point now);
  pb::NodeInfo Append(const pb::NodeInfo& requested, int rank, const std::string& routing_id, Clock::time_point now);

  int servers_;  // these grow when a node joins past them (--join)
  int workers_;
  std::vector<Node> nodes_;
  absl::flat_hash_map<std::string, size_t> by_routing_id_;
};

// "server-1 (id 3, 127.0.0.1:4567, pid 1234)": how errors name a node.
std::string DescribeNode(const pb::NodeInfo& node);

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_MEMBERSHIP_H_
