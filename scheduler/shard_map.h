// ShardMap: which server is the primary of each virtual shard and which
// servers hold its replicas, and how that changes when a server dies.
//
// Placement starts round-robin (primary s % servers, replicas on the next
// R-1 servers), so every server leads and follows the same number of
// shards. On a failure every shard the dead server led is taken over by the
// replica that has applied the most of it, and then each shard that is
// short of copies gets a new replica on the live server holding the fewest
// shards, to bring the replication factor back.
//
// Not thread-safe: owned by the scheduler's event loop.
#ifndef SPARTA_SCHEDULER_SHARD_MAP_H_
#define SPARTA_SCHEDULER_SHARD_MAP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "sparta.pb.h"

namespace sparta {

class ShardMap {
 public:
  // A shard copy moving between servers (BeginMove).
  struct Move {
    uint32_t from = 0;           // the server whose copy moves
    uint32_t to = 0;             // the server it moves to
    uint64_t handoff_epoch = 0;  // the view that marks the shard handing off (0: not yet)
    bool handed_off = false;     // the primary said so
  };

  ShardMap(int num_shards, int servers, int replication_factor);

  // Removes `dead` from every shard; each shard it led is taken over by its
  // whole replica that has applied the most (`applied(rank, shard)`: update
  // batches of `shard` server `rank` has applied, from its last report).
  // Returns the shards left without a whole copy, which keep `dead` as
  // their owner: their data is gone.
  std::vector<uint32_t> RemoveServer(uint32_t dead,
                                     const std::function<uint64_t(uint32_t rank, uint32_t shard)>& applied);

  // Adds replicas on `live` servers until every shard has R copies (or as
  // many as there are live servers); they catch up from view `epoch`.
  // Returns how many replicas were added.
  int RestoreReplication(const std::vector<uint32_t>& live, uint64_t epoch);

  // A fresh server joined: moves replicas onto it from the servers that
  // hold the most shards, until it holds about as many as they do; they
  // catch up from view `epoch`. Returns how many replicas moved.
  int AddServer(uint32_t rank, const std::vector<uint32_t>& live, uint64_t epoch);

  // Server `rank`, acting on view `view_epoch`, holds every shard it
  // replicates in whole but `incomplete`. Returns how many replicas that
  // made whole.
  int OnServerReport(uint32_t rank, uint64_t view_epoch, const std::vector<uint32_t>& incomplete);

  // A live shard move, the way a failover promotes a replica: the target
  // joins the shard as a replica that catches up (its rows stream in
  // chunks while the primary keeps applying and forwarding). Once it holds
  // the shard whole, a moving replica copy just leaves the shard; a moving
  // primary first hands the shard off (the view marks it; the primary parks
  // requests for it until all it admitted is applied everywhere and says
  // so, OnHandedOff), and then the target leads it.
  //
  // Begins moving every copy server `from` holds (it is drained) to the
  // servers of `to`, each shard to the one of them with the fewest copies
  // that holds none of it yet; they catch up from view `epoch`. Returns
  // how many copies move; a copy with no server to go to stays.
  int BeginDrain(uint32_t from, const std::vector<uint32_t>& to, uint64_t epoch);
  // Begins moving `shard`'s copy on `from` to `to`, which holds none of it;
  // false if the shard is moving already or the servers do not fit.
  bool BeginMove(uint32_t shard, uint32_t from, uint32_t to, uint64_t epoch);
  // Advances the moves whose target holds the shard whole: a moving replica
  // copy leaves, a moving primary starts handing off (at view `epoch`, the
  // next one), and a primary that has handed off gives way to the target.
  // Hand-offs go in batches: a server's moving primaries start together,
  // once all are whole at their targets, and not while a batch hands off.
  // Returns how many changed (each needs a new view).
  int AdvanceMoves(uint64_t epoch);
  // Server `rank`, at view `view_epoch`, has handed off `shards`. Returns
  // how many of them were handing off from it (AdvanceMoves switches them).
  int OnHandedOff(uint32_t rank, uint64_t view_epoch, const std::vector<uint32_t>& shards);
  // Copies (primary or replica) server `rank` holds.
  int held_by(uint32_t rank) const;
  size_t moving() const { return moves_.size(); }
  // Moves whose primary hands the shard off (marked in the view).
  size_t handing_off() const;
  // Replicas still catching up.
  size_t catching_up() const { return catching_up_.size(); }

  void ToView(pb::ClusterView* view) const;
  // Takes the placement of a published view (a restarted scheduler). Moves
  // in progress are not in the view: their targets stay replicas, and the
  // next view ends any hand-off (its primary answers what it parked).
  void FromView(const pb::ClusterView& view);
  // The moves under way, for the scheduler's saved state (SaveMoves), and
  // taken back by a scheduler that takes the job over, after FromView
  // (RestoreMoves; a move that no longer fits the placement is dropped).
  // A hand-off under way starts over: the new scheduler's first view ends
  // it (the primary answers what it parked) and AdvanceMoves marks it
  // again, so no SHARDS_HANDED_OFF the old scheduler took with it is
  // waited for. Returns how many moves were taken back.
  void SaveMoves(google::protobuf::RepeatedPtrField<pb::ShardMove>* out) const;
  int RestoreMoves(const google::protobuf::RepeatedPtrField<pb::ShardMove>& moves);
  const std::vector<uint32_t>& owners() const { return owner_; }
  const std::vector<uint32_t>& replicas(uint32_t shard) const { return replicas_[shard]; }
  // The moves under way, by shard.
  const std::map<uint32_t, Move>& moves() const { return moves_; }

 private:
  void CatchUp(uint32_t shard, uint32_t rank, uint64_t epoch) { catching_up_[{shard, rank}] = epoch; }
  // Copies held by each server of `live` (and by no other).
  std::map<uint32_t, int> LoadOf(const std::vector<uint32_t>& live) const;
  // Whether `rank` leads or replicates `shard`.
  bool Holds(uint32_t shard, uint32_t rank) const;

  const int replication_factor_;
  std::vector<uint32_t> owner_;
  std::vector<std::vector<uint32_t>> replicas_;
  // (shard, replica rank) -> the view epoch from which it catches up.
  std::map<std::pair<uint32_t, uint32_t>, uint64_t> catching_up_;
  std::map<uint32_t, Move> moves_;  // by shard
};

}  // namespace sparta

#endif  // SPARTA_SCHEDULER_SHARD_MAP_H_
