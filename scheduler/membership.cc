#include "scheduler/membership.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/daemon_options.h"

namespace sparta {

std::string DescribeNode(const pb::NodeInfo& node) {
  std::string where = node.data_port() != 0 ? absl::StrCat(node.host(), ":", node.data_port()) : node.host();
  return absl::StrCat(RoleName(node.role()), "-", node.rank(), " (id ", node.id(), ", ", where, ", pid ",
                      node.pid(), ")");
}

Membership::Membership(int servers, int workers) : servers_(servers), workers_(workers) {}

int Membership::joined(pb::Role role) const {
  int n = 0;
  for (const Node& node : nodes_) n += node.info.role() == role && !node.dead;
  return n;
}

std::vector<uint32_t> Membership::LiveServers() const {
  std::vector<uint32_t> ranks;
  for (const Node& node : nodes_) {
    if (node.info.role() == pb::SERVER && !node.dead) ranks.push_back(node.info.rank());
  }
  std::sort(ranks.begin(), ranks.end());
  return ranks;
}

absl::StatusOr<pb::NodeInfo> Membership::Add(const pb::NodeInfo& requested, const std::string& routing_id,
                                             Clock::time_point now) {
  const pb::Role role = requested.role();
  if (role != pb::SERVER && role != pb::WORKER && role != pb::SERVING) {
    return absl::InvalidArgumentError(absl::StrCat("cannot register a node of role ", role));
  }
  if (role == pb::SERVING) return AddFrontEnd(requested, routing_id, now);
  const int count = expected(role);
  std::vector<bool> taken(count, false);
  for (const Node& node : nodes_) {
    if (node.info.role() == role && !node.dead) taken[node.info.rank()] = true;
  }
  int rank = requested.rank();
  if (rank >= count && requested.join()) {
    // A node that joins under a rank of its own past the count (a scaled-up
    // StatefulSet's pod): the role grows to it.
    (role == pb::WORKER ? workers_ : servers_) = rank + 1;
    taken.resize(rank + 1, false);
  } else if (rank >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat(RoleName(role), " rank ", rank, " is out of range: the job has ", count));
  }
  if (rank >= 0 && taken[rank]) {
    return absl::AlreadyExistsError(absl::StrCat(RoleName(role), " rank ", rank, " is already taken"));
  }
  if (rank < 0) {
    for (rank = 0; rank < count && taken[rank]; ++rank) {
    }
    if (rank == count && requested.join()) {
      ++(role == pb::WORKER ? workers_ : servers_);
    } else if (rank == count) {
      return absl::ResourceExhaustedError(absl::StrCat("all ", count, " ", RoleName(role), " ranks are taken"));
    }
  }
  return Append(requested, rank, routing_id, now);
}

absl::StatusOr<pb::NodeInfo> Membership::AddFrontEnd(const pb::NodeInfo& requested, const std::string& routing_id,
                                                     Clock::time_point now) {
  std::vector<bool> taken;
  for (const Node& node : nodes_) {
    if (node.info.role() != pb::SERVING || node.dead) continue;
    if (node.info.rank() >= static_cast<int>(taken.size())) taken.resize(node.info.rank() + 1, false);
    taken[node.info.rank()] = true;
  }
  int rank = requested.rank();
  if (rank >= 0 && rank < static_cast<int>(taken.size()) && taken[rank]) {
    return absl::AlreadyExistsError(absl::StrCat("serve rank ", rank, " is already taken"));
  }
  if (rank < 0) {
    for (rank = 0; rank < static_cast<int>(taken.size()) && taken[rank]; ++rank) {
    }
  }
  return Append(requested, rank, routing_id, now);
}

pb::NodeInfo Membership::Append(const pb::NodeInfo& requested, int rank, const std::string& routing_id,
                                Clock::time_point now) {
  Node node;
  node.info = requested;
  node.info.set_rank(rank);
  node.info.set_id(static_cast<uint32_t>(nodes_.size() + 1));  // 0 is the scheduler
  node.routing_id = routing_id;
  node.last_seen = now;
  by_routing_id_[routing_id] = nodes_.size();
  nodes_.push_back(node);
  return node.info;
}

void Membership::Restore(const pb::NodeInfo& info, const std::string& routing_id, bool dead, Clock::time_point now) {
  // A node that had joined past the job's first count.
  int& count = info.role() == pb::SERVER ? servers_ : workers_;
  if (info.role() == pb::SERVER || info.role() == pb::WORKER) count = std::max(count, info.rank() + 1);
  Node node;
  node.info = info;
  node.routing_id = routing_id;
  node.dead = dead;
  node.last_seen = now;
  by_routing_id_[routing_id] = nodes_.size();
  nodes_.push_back(node);
}

const Membership::Node* Membership::FindById(uint32_t id) const {
  for (const Node& node : nodes_) {
    if (node.info.id() == id) return &node;
  }
  return nullptr;
}

Membership::Node* Membership::FindByRoutingId(const std::string& routing_id) {
  auto it = by_routing_id_.find(routing_id);
  return it == by_routing_id_.end() ? nullptr : &nodes_[it->second];
}

Membership::Node* Membership::FindSilent(Clock::time_point now, Clock::duration timeout) {
  for (Node& node : nodes_) {
    if (!node.dead && now - node.last_seen > timeout) return &node;
  }
  return nullptr;
}

std::string Membership::DescribeMissing() const {
  std::vector<std::string> parts;
  for (pb::Role role : {pb::SERVER, pb::WORKER}) {
    std::vector<bool> seen(expected(role), false);
    for (const Node& node : nodes_) {
      if (node.info.role() == role && !node.dead) seen[node.info.rank()] = true;
    }
    std::vector<int> missing;
    for (int r = 0; r < expected(role); ++r) {
      if (!seen[r]) missing.push_back(r);
    }
    if (!missing.empty()) parts.push_back(absl::StrCat(RoleName(role), " ranks ", absl::StrJoin(missing, ", ")));
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace sparta
