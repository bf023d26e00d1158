#include "scheduler/server_scaling.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "scheduler/shard_balancer.h"

namespace sparta {

// A primary hands a moving shard off once no push it admitted is
// unanswered; with ack "all" that means applied on every copy, with
// "primary" only on its own, and the new primary could miss the last ones.
const char kMovesNeedAckAll[] =
    "moving shards between servers needs storage.ack: all (with primary, pushes acknowledged while a shard changes "
    "owners could be lost)";

ServerScaling::ServerScaling(const Config& config, const Membership* members, ShardMap* shard_map)
    : config_(config), members_(members), shard_map_(shard_map), wanted_(config.cluster.servers) {}

std::vector<uint32_t> ServerScaling::Staying() const {
  std::vector<uint32_t> staying;
  for (const auto& n : members_->nodes()) {
    if (n.info.role() == pb::SERVER && !n.dead && !draining_.count(n.info.id())) staying.push_back(n.info.rank());
  }
  std::sort(staying.begin(), staying.end());
  return staying;
}

std::vector<uint64_t> ServerScaling::ShardRows() const {
  std::vector<uint64_t> rows(shard_map_->owners().size(), 0);
  for (const auto& n : members_->nodes()) {
    if (n.info.role() != pb::SERVER || n.dead) continue;
    const auto& reported = n.stats.shard_rows();
    for (uint32_t s = 0; s < rows.size() && s < static_cast<uint32_t>(reported.size()); ++s) {
      if (shard_map_->owners()[s] == static_cast<uint32_t>(n.info.rank())) rows[s] = reported[s];
    }
  }
  return rows;
}

absl::Status ServerScaling::Drain(int rank, uint64_t epoch) {
  SPARTA_RETURN_IF_ERROR(BeginDrain(rank, epoch));
  wanted_ = std::min<int>(wanted_, static_cast<int>(Staying().size()));
  return absl::OkStatus();
}

absl::Status ServerScaling::BeginDrain(int rank, uint64_t epoch) {
  const Membership::Node* node = nullptr;
  std::vector<uint32_t> staying = Staying();
  for (const auto& n : members_->nodes()) {
    if (n.info.role() == pb::SERVER && !n.dead && n.info.rank() == rank) node = &n;
  }
  staying.erase(std::remove(staying.begin(), staying.end(), static_cast<uint32_t>(rank)), staying.end());
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no live server-", rank));
  if (draining_.count(node->info.id())) {
    return absl::AlreadyExistsError(absl::StrCat("server-", rank, " is draining already"));
  }
  if (static_cast<int>(staying.size()) < std::max(1, config_.storage.replication_factor)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "draining server-", rank, " would leave ", staying.size(), " servers to hold ",
        config_.storage.replication_factor, " copies of each shard (storage.replication_factor)"));
  }
  if (config_.storage.ack_mode != AckMode::kAll) {
    return absl::FailedPreconditionError(absl::StrCat("draining a server: ", kMovesNeedAckAll));
  }
  draining_.insert(node->info.id());
  const int moving = shard_map_->BeginDrain(rank, staying, epoch);
  spdlog::info("draining {}: {} shard copies move to servers {} (rows copied in chunks while it keeps serving; "
               "each shard switches owner once its copy is whole)",
               DescribeNode(node->info), moving, absl::StrJoin(staying, ", "));
  return absl::OkStatus();
}

ServerScaling::ScalePlan ServerScaling::Scale(uint32_t wanted, uint64_t epoch) {
  const std::vector<uint32_t> staying = Staying();
  const int have = static_cast<int>(staying.size());
  ScalePlan plan;
  if (static_cast<int>(wanted) < std::max(1, config_.storage.replication_factor)) {
    plan.status = absl::InvalidArgumentError(absl::StrCat("scale: ", wanted, " servers cannot hold ",
                                                          config_.storage.replication_factor,
                                                          " copies of each shard (storage.replication_factor)"));
    return plan;
  }
  if (static_cast<int>(wanted) != have && config_.storage.ack_mode != AckMode::kAll) {
    plan.status = absl::FailedPreconditionError(absl::StrCat("scale: ", kMovesNeedAckAll));
    return plan;
  }
  wanted_ = static_cast<int>(wanted);
  plan.accepted = true;
  if (static_cast<int>(wanted) > have) {
    plan.to_start = wanted - have;
    plan.what = absl::StrCat(plan.to_start, " more servers wanted: start them with sparta-server --join (the "
                                            "launcher does); shards move to each until rows are balanced");
  } else if (static_cast<int>(wanted) < have) {
    std::vector<std::string> drained;
    for (auto rank = staying.rbegin();
         rank != staying.rend() && have - static_cast<int>(drained.size()) > static_cast<int>(wanted); ++rank) {
      if (absl::Status begun = BeginDrain(static_cast<int>(*rank), epoch); !begun.ok()) {
        plan.status = begun;
        return plan;
      }
      drained.push_back(absl::StrCat("server-", *rank));
      ++plan.drains_begun;
    }
    plan.what =
        absl::StrCat("draining ", absl::StrJoin(drained, ", "), ": their shards move to the others, then they exit");
  } else {
    plan.what = absl::StrCat("the job runs on ", have, " servers already");
  }
  spdlog::info("scale to {} servers: {}", wanted, plan.what);
  return plan;
}

ServerScaling::Joined ServerScaling::OnServerJoined(uint64_t epoch) {
  Joined joined;
  joined.placed = shard_map_->RestoreReplication(Staying(), epoch);
  joined.moving = BalanceRows(epoch);
  wanted_ = std::max<int>(wanted_, static_cast<int>(Staying().size()));
  return joined;
}

int ServerScaling::BalanceRows(uint64_t epoch) {
  int moving = 0;
  for (const PlannedMove& move : PlanRowBalance(*shard_map_, ShardRows(), Staying())) {
    moving += shard_map_->BeginMove(move.shard, move.from, move.to, epoch);
  }
  return moving;
}

int ServerScaling::Redrain(uint64_t epoch) {
  int begun = 0;
  const std::vector<uint32_t> staying = Staying();
  for (const auto& n : members_->nodes()) {
    if (n.info.role() == pb::SERVER && !n.dead && draining_.count(n.info.id())) {
      begun += shard_map_->BeginDrain(n.info.rank(), staying, epoch);
    }
  }
  if (begun > 0) spdlog::info("{} shard copies of drained servers move again (their moves ended with a server)", begun);
  return begun;
}

ServerScaling::Advanced ServerScaling::AdvanceMoves(uint64_t epoch) {
  Advanced advanced;
  advanced.switched = shard_map_->AdvanceMoves(epoch);
  for (const auto& n : members_->nodes()) {
    if (n.info.role() == pb::SERVER && !n.dead && draining_.count(n.info.id()) &&
        shard_map_->held_by(n.info.rank()) == 0) {
      spdlog::info("{} is drained: every shard it held has moved; it leaves the job", DescribeNode(n.info));
      advanced.leaving.push_back(n.routing_id);
    }
  }
  if (advanced.switched > 0) {
    spdlog::info("{} shard moves advanced; {} still moving, {} of them handing off at epoch {}", advanced.switched,
                 shard_map_->moving(), shard_map_->handing_off(), epoch);
  }
  return advanced;
}

}  // namespace sparta
