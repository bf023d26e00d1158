#include "server/forward_planner.h"

#include <algorithm>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/message.h"
#include "common/traffic_counters.h"

namespace sparta {

namespace {

// A forward's frames: the keys at `positions` of a push, their values
// (`row_bytes` each) and, when `counts` is not null, their occurrences.
std::vector<zmq::message_t> GatherFrames(const uint64_t* keys, const void* values, const uint32_t* counts,
                                         std::span<const uint32_t> positions, size_t row_bytes) {
  std::vector<zmq::message_t> frames;
  frames.push_back(FrameFromVector(ShardView::Gather<uint64_t>(keys, positions, 1)));
  frames.push_back(FrameFromVector(ShardView::Gather<char>(values, positions, row_bytes)));
  if (counts != nullptr) frames.push_back(FrameFromVector(ShardView::Gather<uint32_t>(counts, positions, 1)));
  return frames;
}

}  // namespace

ForwardPlanner::ForwardPlanner(uint32_t self_id, bool ack_all, size_t held_bytes_without_waiting)
    : self_id_(self_id), ack_all_(ack_all), held_bytes_without_waiting_(held_bytes_without_waiting) {}

void ForwardPlanner::Connect(uint32_t peer, Decisions* out) {
  if (peers_.size() <= peer) peers_.resize(peer + 1);
  Release(peers_[peer], out);
  peers_[peer] = Peer();
  peers_[peer].live = true;
}

void ForwardPlanner::Disconnect(uint32_t peer, Decisions* out) {
  if (!live(peer)) return;
  Release(peers_[peer], out);
  peers_[peer] = Peer();
  for (auto it = awaiting_.begin(); it != awaiting_.end();) {
    if (std::get<0>(it->first) == peer) {
      out->acks.push_back({std::move(it->second.request), absl::OkStatus()});
      awaiting_.erase(it++);
    } else {
      ++it;
    }
  }
}

int ForwardPlanner::Forward(const std::shared_ptr<Request>& request, uint64_t epoch,
                            const std::vector<uint32_t>* only, Decisions* out) {
  if (!shards_.any_replicas()) return 0;  // replication factor 1: nothing to do per key
  const auto keys = request->keys;
  const pb::Header& in = request->message.header;
  const ShardView::Groups groups = shards_.ByReplica(keys, only);
  const size_t row_bytes = size_t{in.dim()} * ValueBytes(in.dtype());
  int acks = 0;
  for (uint32_t peer = 0; peer < peers_.size(); ++peer) {
    if (!peers_[peer].live) continue;
    Outgoing message;
    if (groups.whole()) {
      // Every key goes here: the received frames go out as they are.
      if (std::find(groups.whole_to.begin(), groups.whole_to.end(), peer) == groups.whole_to.end()) continue;
      message.frames.resize(request->message.frames.size());
      for (size_t f = 0; f < message.frames.size(); ++f) {
        message.frames[f].copy(request->message.frames[f]);  // shares the buffer
      }
      message.header.set_num_keys(in.num_keys());
    } else {
      if (peer >= groups.positions.size() || groups.positions[peer].empty()) continue;
      const std::vector<uint32_t>& mine = groups.positions[peer];
      message.header.set_num_keys(static_cast<uint32_t>(mine.size()));
      message.frames = GatherFrames(keys.data(), request->message.frames[1].data(),
                                    request->counts.empty() ? nullptr : request->counts.data(), mine, row_bytes);
    }
    // Replicas make the same admission and expiry decisions as this primary:
    // they count the same occurrences and stamp rows with the same step and time.
    message.header.set_key_counts(in.key_counts());
    message.header.set_step(in.step());
    message.header.set_apply_time(in.apply_time());
    message.header.set_type(pb::REPLICATE);
    message.header.set_sender(self_id_);
    message.header.set_origin(in.sender());
    message.header.set_seq(in.seq());
    message.header.set_epoch(epoch);
    message.header.set_table(in.table());
    message.header.set_dim(in.dim());
    message.header.set_dtype(in.dtype());
    message.header.set_clock(in.clock());
    Peer& p = peers_[peer];
    Outgoing held;
    const bool split = SplitBlocked(p, &message, &held);
    const bool now = message.header.num_keys() > 0;
    // A held piece the push does not wait for, while few enough are held.
    const bool catch_up =
        split && held_bytes_ + TrafficCounters::FrameBytes(held.frames) <= held_bytes_without_waiting_;
    if (catch_up) held.header.set_catch_up(true);
    if (ack_all_ && (now || !catch_up)) {
      awaiting_[{peer, in.sender(), in.seq()}] = Awaited{request, (now ? 1 : 0) + (split && !catch_up ? 1 : 0)};
      held.awaited = split && !catch_up;
      ++acks;
    } else if (split && !catch_up && !ack_all_) {
      // Too much held: the push waits until its forward goes out.
      held.waiter = request;
      ++acks;
    }
    if (now) Emit(peer, message, out);
    if (split) Hold(p, std::move(held));
  }
  return acks;
}

bool ForwardPlanner::SplitBlocked(const Peer& p, Outgoing* message, Outgoing* held) const {
  if (p.streaming.empty() && p.held.empty()) return false;
  std::vector<uint64_t> scratch;
  const auto keys = FrameView<uint64_t>(message->frames[0], &scratch);
  std::vector<uint32_t> go, wait;
  for (uint32_t i = 0; i < keys.size(); ++i) (Blocked(p, shards_.shard_of(keys[i])) ? wait : go).push_back(i);
  if (wait.empty()) return false;
  const pb::Header& h = message->header;
  const size_t row_bytes = size_t{h.dim()} * ValueBytes(h.dtype());
  const auto* counts = message->frames.size() > 2 ? static_cast<const uint32_t*>(message->frames[2].data()) : nullptr;
  auto piece = [&](const std::vector<uint32_t>& positions) {
    Outgoing out;
    out.header = h;
    out.header.set_num_keys(static_cast<uint32_t>(positions.size()));
    out.frames = GatherFrames(keys.data(), message->frames[1].data(), counts, positions, row_bytes);
    for (uint32_t i : positions) out.shards.push_back(shards_.shard_of(keys[i]));
    std::sort(out.shards.begin(), out.shards.end());
    out.shards.erase(std::unique(out.shards.begin(), out.shards.end()), out.shards.end());
    return out;
  };
  *held = piece(wait);
  held->waiter = std::move(message->waiter);
  held->awaited = message->awaited;
  if (go.empty()) {
    message->header.set_num_keys(0);
    message->frames.clear();
  } else {
    Outgoing now = piece(go);
    now.shards.clear();
    now.awaited = message->awaited;
    *message = std::move(now);
  }
  return true;
}

void ForwardPlanner::Hold(Peer& p, Outgoing message) {
  held_bytes_ += TrafficCounters::FrameBytes(message.frames);
  peak_held_bytes_ = std::max(peak_held_bytes_, held_bytes_);
  for (uint32_t s : message.shards) ++p.held_shards[s];
  p.held.push_back(std::move(message));
}

void ForwardPlanner::Emit(uint32_t peer, Outgoing& message, Decisions* out) {
  out->sends.push_back({peer, std::move(message.header), std::move(message.frames)});
}

void ForwardPlanner::HoldForSnapshot(uint32_t peer, uint32_t shard) {
  if (live(peer)) ++peers_[peer].streaming[shard];
}

void ForwardPlanner::SnapshotDone(uint32_t peer, uint32_t shard, Decisions* out) {
  if (!live(peer)) return;
  Peer& p = peers_[peer];
  if (auto it = p.streaming.find(shard); it != p.streaming.end() && --it->second <= 0) p.streaming.erase(it);
  Flush(peer, out);
}

void ForwardPlanner::Flush(uint32_t peer, Decisions* out) {
  Peer& p = peers_[peer];
  std::deque<Outgoing> held;
  held.swap(p.held);
  p.held_shards.clear();
  std::vector<std::shared_ptr<Request>> sent;
  for (auto& message : held) {
    held_bytes_ -= TrafficCounters::FrameBytes(message.frames);
    // What still waits on a stream, or behind a held piece of its shard,
    // stays (in order); the rest goes now.
    Outgoing rest;
    const bool split = SplitBlocked(p, &message, &rest);
    if (message.header.num_keys() > 0) {
      if (split && message.awaited) {
        auto it = awaiting_.find(AckKey{peer, message.header.origin(), message.header.seq()});
        if (it != awaiting_.end()) ++it->second.pieces;  // one piece more to answer
      }
      Emit(peer, message, out);
    }
    if (split) {
      Hold(p, std::move(rest));
    } else if (message.waiter) {
      sent.push_back(std::move(message.waiter));
    }
  }
  for (auto& request : sent) out->acks.push_back({std::move(request), absl::OkStatus()});
}

void ForwardPlanner::Release(Peer& peer, Decisions* out) {
  for (auto& message : peer.held) {
    held_bytes_ -= TrafficCounters::FrameBytes(message.frames);
    if (message.waiter) out->acks.push_back({std::move(message.waiter), absl::OkStatus()});
  }
  peer.held.clear();
  peer.held_shards.clear();
  peer.streaming.clear();
}

std::optional<ForwardPlanner::Ack> ForwardPlanner::OnAnswer(uint32_t peer, const pb::Header& answer) {
  if (answer.catch_up()) {
    // No push waits for it; a refusal means the replica left the shard.
    if (answer.status() != 0) spdlog::debug("server-{} refused a held forward: {}", peer, answer.error());
    return std::nullopt;
  }
  auto it = awaiting_.find(AckKey{peer, answer.origin(), answer.seq()});
  if (it == awaiting_.end()) return std::nullopt;                  // ack "primary", or already released
  if (answer.status() == 0 && --it->second.pieces > 0) return std::nullopt;  // more pieces of it to answer
  Ack ack{std::move(it->second.request), absl::OkStatus()};
  awaiting_.erase(it);
  if (answer.status() != 0) {
    ack.status = absl::Status(static_cast<absl::StatusCode>(answer.status()),
                              absl::StrCat("replica server-", peer, ": ", answer.error()));
  }
  return ack;
}

}  // namespace sparta
