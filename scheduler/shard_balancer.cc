#include "scheduler/shard_balancer.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace sparta {

namespace {

// Where the copies are once the moves under way (and those planned) are done.
struct Placement {
  std::vector<uint32_t> owner;
  std::vector<std::vector<uint32_t>> replicas;
  std::vector<bool> moving;  // one copy of a shard moves at a time (ShardMap::BeginMove)

  bool Holds(uint32_t s, uint32_t rank) const {
    return owner[s] == rank || std::find(replicas[s].begin(), replicas[s].end(), rank) != replicas[s].end();
  }
  // Moves `s`'s copy on `from` to `to`.
  void Move(uint32_t s, uint32_t from, uint32_t to) {
    auto& copies = replicas[s];
    copies.erase(std::remove(copies.begin(), copies.end(), to), copies.end());
    if (owner[s] == from) {
      owner[s] = to;
    } else {
      std::replace(copies.begin(), copies.end(), from, to);
    }
    moving[s] = true;
  }
};

}  // namespace

std::vector<PlannedMove> PlanRowBalance(const ShardMap& map, const std::vector<uint64_t>& rows,
                                        const std::vector<uint32_t>& servers) {
  const uint32_t n = static_cast<uint32_t>(map.owners().size());
  Placement at{map.owners(), {}, std::vector<bool>(n, false)};
  for (uint32_t s = 0; s < n; ++s) at.replicas.push_back(map.replicas(s));
  // BeginMove made each target a replica already.
  for (const auto& [s, move] : map.moves()) at.Move(s, move.from, move.to);
  std::vector<PlannedMove> plan;
  if (servers.size() < 2) return plan;

  auto weight = [&](uint32_t s) { return static_cast<double>(s < rows.size() ? rows[s] : 0) + 1.0; };
  std::map<uint32_t, double> lead, held;  // by server: rows it leads, rows it holds
  for (uint32_t r : servers) lead[r] = held[r] = 0;
  for (uint32_t s = 0; s < n; ++s) {
    if (lead.count(at.owner[s])) {
      lead[at.owner[s]] += weight(s);
      held[at.owner[s]] += weight(s);
    }
    for (uint32_t r : at.replicas[s]) {
      if (held.count(r)) held[r] += weight(s);
    }
  }

  // Moves copies (primaries, or replica copies) from the servers with the
  // most to the one with the least while that narrows the gap enough.
  auto balance = [&](bool primaries) {
    std::map<uint32_t, double>& load = primaries ? lead : held;
    double total = 0;
    for (const auto& [rank, rows_there] : load) total += rows_there;
    const double min_gain = std::max(1.0, total / static_cast<double>(servers.size()) / 100.0);
    for (uint32_t round = 0; round < n; ++round) {
      std::vector<uint32_t> order(servers);
      std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
        return load[a] != load[b] ? load[a] < load[b] : a < b;
      });
      const uint32_t to = order.front();
      bool moved = false;
      for (auto from = order.rbegin(); from != order.rend() && *from != to && !moved; ++from) {
        const double gap = load[*from] - load[to];
        uint32_t best = n;
        double best_gain = 0;
        for (uint32_t s = 0; s < n; ++s) {
          if (at.moving[s] || at.Holds(s, to)) continue;
          const bool copy_there = primaries ? at.owner[s] == *from
                                            : std::find(at.replicas[s].begin(), at.replicas[s].end(), *from) !=
                                                  at.replicas[s].end();
          if (!copy_there) continue;
          // The pair's gap after the move is |gap - 2w|.
          const double gain = gap - std::abs(gap - 2 * weight(s));
          if (gain > best_gain) {
            best_gain = gain;
            best = s;
          }
        }
        if (best == n || best_gain < min_gain) continue;
        const double w = weight(best);
        if (primaries) {
          lead[*from] -= w;
          lead[to] += w;
        }
        held[*from] -= w;
        held[to] += w;
        at.Move(best, *from, to);
        plan.push_back({best, *from, to});
        moved = true;
      }
      if (!moved) return;
    }
  };
  balance(/*primaries=*/true);
  balance(/*primaries=*/false);
  return plan;
}

}  // namespace sparta
