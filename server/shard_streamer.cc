#include "server/shard_streamer.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"

namespace sparta {

ShardStreamer::ShardStreamer(RowStore* store, Mailbox<SnapshotChunk>* out, uint64_t bytes_per_second)
    : store_(store), out_(out), bytes_per_second_(bytes_per_second), thread_([this] { Loop(); }) {}

ShardStreamer::~ShardStreamer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ShardStreamer::Stream(ShardCut cut) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(cut));
  }
  cv_.notify_all();
}

void ShardStreamer::Acknowledged(uint64_t stream, const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A replica loads its parts in order: the oldest of the stream's.
    auto it = std::find_if(unacknowledged_.begin(), unacknowledged_.end(),
                           [&](const InFlight& f) { return f.stream == stream; });
    if (it != unacknowledged_.end()) {
      unacknowledged_bytes_ -= it->bytes;
      unacknowledged_.erase(it);
    }
    if (!status.ok() && stream == current_) {
      cancel_current_ = true;
      current_failed_ = status.code() != absl::StatusCode::kAborted;
    }
  }
  cv_.notify_all();
}

void ShardStreamer::Cancel(const std::function<bool(uint32_t peer, uint32_t shard)>& stop) {
  std::vector<SnapshotChunk> cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (!stop(it->peer, it->shard)) {
        ++it;
        continue;
      }
      SnapshotChunk end;
      end.kind = SnapshotChunk::Kind::kCancelled;
      end.peer = it->peer;
      end.shard = it->shard;
      cancelled.push_back(std::move(end));
      it = queue_.erase(it);
    }
    if (current_ != 0 && stop(current_peer_, current_shard_)) cancel_current_ = true;
    // Parts a replica that left will never acknowledge.
    std::erase_if(unacknowledged_, [&](const InFlight& f) {
      if (!stop(f.peer, f.shard)) return false;
      unacknowledged_bytes_ -= f.bytes;
      return true;
    });
  }
  cv_.notify_all();
  for (auto& end : cancelled) out_->Post(std::move(end));
}

ShardStreamer::Totals ShardStreamer::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return totals_;
}

void ShardStreamer::Loop() {
  while (true) {
    ShardCut cut;
    uint64_t stream;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      cut = std::move(queue_.front());
      queue_.pop_front();
      stream = next_stream_++;
      current_ = stream;
      current_peer_ = cut.peer;
      current_shard_ = cut.shard;
      cancel_current_ = false;
      current_failed_ = false;
    }
    const bool whole = Send(cut, stream);
    bool failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_ = 0;
      failed = current_failed_;
      if (stop_) return;
    }
    // Behind every part on the socket: the forwards held back for the
    // replica follow it (Replicator::SnapshotDone).
    SnapshotChunk end;
    end.kind = whole ? SnapshotChunk::Kind::kEnd : failed ? SnapshotChunk::Kind::kFailed : SnapshotChunk::Kind::kCancelled;
    end.peer = cut.peer;
    end.shard = cut.shard;
    end.stream = stream;
    out_->Post(std::move(end));
  }
}

bool ShardStreamer::Post(SnapshotChunk chunk) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    const size_t bytes = chunk.bytes();
    cv_.wait(lock, [&] {
      return stop_ || cancel_current_ || unacknowledged_.empty() ||
             (unacknowledged_bytes_ + bytes <= kWindowBytes && unacknowledged_.size() < kWindowChunks);
    });
    if (bytes_per_second_ > 0) {
      // The rate: a chunk goes once the bytes sent before it have had their
      // time (no credit builds up while idle, so no burst follows a pause).
      cv_.wait_until(lock, next_send_, [&] { return stop_ || cancel_current_; });
      next_send_ = std::max(next_send_, std::chrono::steady_clock::now()) +
                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(static_cast<double>(bytes) / bytes_per_second_));
    }
    if (stop_ || cancel_current_) return false;
    unacknowledged_.push_back({chunk.stream, chunk.peer, chunk.shard, bytes});
    unacknowledged_bytes_ += bytes;
    totals_.peak_unacknowledged_bytes = std::max(totals_.peak_unacknowledged_bytes, unacknowledged_bytes_);
    totals_.parts += 1;
    totals_.bytes += bytes;
  }
  out_->Post(std::move(chunk));
  return true;
}

bool ShardStreamer::Send(ShardCut& cut, uint64_t stream) {
  size_t rows = 0, bytes = 0, chunks = 0;
  auto post = [&](SnapshotChunk chunk) {
    chunk.peer = cut.peer;
    chunk.shard = cut.shard;
    chunk.stream = stream;
    rows += chunk.keys.size();
    bytes += chunk.bytes();
    ++chunks;
    return Post(std::move(chunk));
  };
  // What the cut copied first: the admission counters, and the rows when
  // the server has no store.
  for (SnapshotChunk& chunk : cut.copied) {
    if (!post(std::move(chunk))) return false;
  }
  if (cut.snapshot != nullptr) {
    for (const ShardCut::Table& t : cut.tables) {
      const size_t max_rows = std::max<size_t>(1, kChunkBytes / (t.record * sizeof(float) + sizeof(uint64_t)));
      auto fresh = [&] {
        SnapshotChunk chunk;
        chunk.table = t.table;
        chunk.record = t.record;
        chunk.keys.reserve(max_rows);
        chunk.rows.reserve(max_rows * t.record);
        return chunk;
      };
      SnapshotChunk chunk = fresh();
      const size_t chunks_before = chunks;
      bool go_on = true;
      rocksdb::ColumnFamilyHandle* column = store_->column(t.table->spec.id());
      absl::Status st = store_->PrepareScan(column);
      if (st.ok()) st = store_->ForEachRow(
          column, cut.shard, cut.snapshot.get(),
          [&](uint64_t key, std::span<const float> row) {
            // A record of another size was written under another table
            // spec: RocksDB may keep it, but it is no row of this table.
            if (row.size() != t.record) return true;
            chunk.keys.push_back(key);
            chunk.rows.insert(chunk.rows.end(), row.begin(), row.end());
            if (chunk.keys.size() < max_rows) return true;
            go_on = post(std::exchange(chunk, fresh()));
            return go_on;
          });
      if (!st.ok()) {
        spdlog::error("streaming shard {} to server-{}: {}", cut.shard, cut.peer, st.message());
        std::lock_guard<std::mutex> lock(mu_);
        current_failed_ = true;
        return false;
      }
      // A table with no rows in the shard still sends one (empty) part: it
      // names the table, which a server that joined the job has never been
      // told of.
      const bool last = !chunk.keys.empty() || chunks == chunks_before;
      if (!go_on || (last && !post(std::move(chunk)))) return false;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_ || cancel_current_) return false;
  spdlog::info("streamed shard {} to server-{}: {} rows, {} KiB in {} parts", cut.shard, cut.peer, rows, bytes >> 10,
               chunks);
  return true;
}

}  // namespace sparta
