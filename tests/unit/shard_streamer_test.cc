// ShardStreamer, with a real RocksDB and its own thread, the test playing the
// server's I/O thread: a shard streams as it was at the cut (rows written
// after the snapshot are not in it), in key order and in whole, in chunks of
// at most kChunkBytes, with never more than kWindowBytes posted and not yet
// acknowledged; a cancelled stream, or one refused by a replica past its
// view, ends with kCancelled; one the replica could not load ends with
// kFailed (tried again later); and when the tries fall due. A table with
// no rows in the shard still sends one empty part.
#include "server/shard_streamer.h"
#include "server/snapshot_retries.h"

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>

#include <catch2/catch.hpp>

namespace sparta::shard_streamer_test {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kTable = 3;
constexpr uint32_t kRecord = 64;  // floats per row: 264 bytes with the key

struct TempDir {
  TempDir() : path(fs::temp_directory_path() / ("sparta-streamer-" + std::to_string(getpid()))) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

std::vector<float> RowOf(uint64_t key, float version) {
  std::vector<float> row(kRecord);
  for (uint32_t i = 0; i < kRecord; ++i) row[i] = static_cast<float>(key) + version + 0.001f * static_cast<float>(i);
  return row;
}

// `rows` rows in each of shards 4, 5 and 6.
void WriteRows(RowStore* store, uint64_t rows, float version) {
  RowBatch batch;
  for (uint32_t shard = 4; shard <= 6; ++shard) {
    for (uint64_t key = 1; key <= rows; ++key) {
      const auto row = RowOf(key * 8 + shard, version);
      batch.Put(store->column(kTable), shard, key * 8 + shard, row.data(), kRecord);
    }
    REQUIRE(store->Write(&batch).ok());
  }
}

// Waits (up to a minute: a hang fails, it does not stall the suite) for the
// streamer to post, then takes what it posted.
std::deque<SnapshotChunk> Next(Mailbox<SnapshotChunk>& out) {
  pollfd p{out.fd(), POLLIN, 0};
  REQUIRE(poll(&p, 1, 60000) == 1);
  std::deque<SnapshotChunk> got;
  out.Drain(&got);
  return got;
}

struct Fixture {
  Fixture() {
    auto opened = RowStore::Open((tmp.path / "db").string(), /*wal=*/false, /*fresh=*/true);
    REQUIRE(opened.ok());
    store = *std::move(opened);
    REQUIRE(store->AddTable(kTable).ok());
    table.spec.set_id(kTable);
    table.spec.set_name("t");
  }
  ShardCut Cut(uint32_t peer, uint32_t shard) {
    ShardCut cut;
    cut.peer = peer;
    cut.shard = shard;
    cut.snapshot = store->TakeSnapshot();
    cut.tables.push_back({&table, kRecord});
    return cut;
  }
  TempDir tmp;
  std::unique_ptr<RowStore> store;
  TableEntry table;
  Mailbox<SnapshotChunk> out;
};

TEST_CASE("a shard streams whole, as of its cut, within the window", "[shard_streamer]") {
  Fixture f;
  const uint64_t rows = 20000;  // 5 MiB of shard 5: more than the window
  WriteRows(f.store.get(), rows, 0.0f);
  ShardCut cut = f.Cut(/*peer=*/2, /*shard=*/5);
  WriteRows(f.store.get(), rows, 0.5f);  // after the cut: not to be sent

  ShardStreamer streamer(f.store.get(), &f.out);
  streamer.Stream(std::move(cut));
  std::map<uint64_t, std::vector<float>> received;
  std::deque<SnapshotChunk> unacknowledged;
  size_t unacknowledged_bytes = 0, peak = 0;
  bool ended = false;
  uint64_t last_key = 0;
  while (!ended) {
    for (SnapshotChunk& chunk : Next(f.out)) {
      REQUIRE(chunk.peer == 2);
      REQUIRE(chunk.shard == 5);
      if (chunk.kind == SnapshotChunk::Kind::kEnd) {
        ended = true;
        continue;
      }
      REQUIRE(chunk.kind == SnapshotChunk::Kind::kRows);
      REQUIRE(chunk.table == &f.table);
      REQUIRE(chunk.record == kRecord);
      REQUIRE(chunk.bytes() <= ShardStreamer::kChunkBytes);
      REQUIRE(chunk.rows.size() == chunk.keys.size() * kRecord);
      for (size_t i = 0; i < chunk.keys.size(); ++i) {
        REQUIRE(chunk.keys[i] > last_key);  // key order, each once
        last_key = chunk.keys[i];
        received[chunk.keys[i]].assign(chunk.rows.begin() + i * kRecord, chunk.rows.begin() + (i + 1) * kRecord);
      }
      unacknowledged_bytes += chunk.bytes();
      peak = std::max(peak, unacknowledged_bytes);
      REQUIRE(unacknowledged_bytes <= ShardStreamer::kWindowBytes);
      unacknowledged.push_back(std::move(chunk));
    }
    // Once the window cannot take another full chunk, the replica loads
    // the oldest part, and the streamer may send more. (Until then it
    // posts on, or ends the stream: acknowledging later makes the window,
    // not this loop, what holds the stream back.)
    if (!ended && unacknowledged_bytes + ShardStreamer::kChunkBytes > ShardStreamer::kWindowBytes) {
      unacknowledged_bytes -= unacknowledged.front().bytes();
      streamer.Acknowledged(unacknowledged.front().stream, absl::OkStatus());
      unacknowledged.pop_front();
    }
  }
  REQUIRE(received.size() == rows);
  for (const auto& [key, row] : received) {
    REQUIRE(key % 8 == 5);
    REQUIRE(row == RowOf(key, 0.0f));
  }
  // The window was what held the stream back.
  REQUIRE(peak > ShardStreamer::kWindowBytes - ShardStreamer::kChunkBytes);
  REQUIRE(streamer.totals().peak_unacknowledged_bytes <= ShardStreamer::kWindowBytes);
}

TEST_CASE("streams keep to their rate: each chunk waits for the bytes before it", "[shard_streamer]") {
  Fixture f;
  WriteRows(f.store.get(), 12000, 0.0f);  // 3.2 MB of shard 5: four chunks
  constexpr uint64_t kRate = 8 << 20;      // bytes per second
  ShardStreamer streamer(f.store.get(), &f.out, kRate);
  const auto start = std::chrono::steady_clock::now();
  streamer.Stream(f.Cut(/*peer=*/2, /*shard=*/5));
  std::vector<size_t> sizes;
  bool ended = false;
  while (!ended) {
    for (SnapshotChunk& chunk : Next(f.out)) {
      if (chunk.kind == SnapshotChunk::Kind::kEnd) {
        ended = true;
        continue;
      }
      sizes.push_back(chunk.bytes());
      streamer.Acknowledged(chunk.stream, absl::OkStatus());  // the window holds nothing back
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(sizes.size() >= 3);
  // The first chunk goes at once, each later one once its predecessors'
  // bytes have had their time at the rate.
  size_t before_last = 0;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) before_last += sizes[i];
  CHECK(seconds >= static_cast<double>(before_last) / kRate);
}

TEST_CASE("a table with no rows in the shard still sends one empty part, which names it", "[shard_streamer]") {
  // A server that joined the job was never told of the tables the workers
  // created at the start: the stream is how it learns of each.
  Fixture f;
  WriteRows(f.store.get(), 10, 0.0f);  // shards 4..6 only
  ShardStreamer streamer(f.store.get(), &f.out);
  streamer.Stream(f.Cut(/*peer=*/1, /*shard=*/7));
  std::vector<SnapshotChunk> parts;
  bool ended = false;
  while (!ended) {
    for (SnapshotChunk& chunk : Next(f.out)) {
      ended |= chunk.kind == SnapshotChunk::Kind::kEnd;
      if (chunk.kind == SnapshotChunk::Kind::kRows) parts.push_back(std::move(chunk));
    }
  }
  REQUIRE(parts.size() == 1);
  CHECK(parts[0].table == &f.table);
  CHECK(parts[0].record == kRecord);
  CHECK(parts[0].keys.empty());
  CHECK(parts[0].rows.empty());
}

TEST_CASE("a cancelled or refused stream ends without its end mark", "[shard_streamer]") {
  Fixture f;
  WriteRows(f.store.get(), 20000, 0.0f);
  ShardStreamer streamer(f.store.get(), &f.out);
  streamer.Stream(f.Cut(/*peer=*/1, /*shard=*/4));
  streamer.Stream(f.Cut(/*peer=*/1, /*shard=*/6));
  streamer.Stream(f.Cut(/*peer=*/2, /*shard=*/5));

  // Server 1 leaves while shard 4 streams to it: shard 4 is cut short,
  // shard 6 (queued) is dropped, shard 5 goes to server 2.
  std::deque<SnapshotChunk> first = Next(f.out);
  REQUIRE(first.front().shard == 4);
  streamer.Cancel([](uint32_t peer, uint32_t) { return peer == 1; });
  std::map<uint32_t, SnapshotChunk::Kind> ends;
  uint64_t refused = 0;
  while (ends.size() < 3) {
    for (SnapshotChunk& chunk : Next(f.out)) {
      if (chunk.kind == SnapshotChunk::Kind::kEnd || chunk.kind == SnapshotChunk::Kind::kCancelled) {
        REQUIRE(ends.count(chunk.shard) == 0);
        ends[chunk.shard] = chunk.kind;
      } else if (chunk.shard == 5 && refused == 0) {
        // Server 2 refuses its first part of shard 5 (a view it does not
        // take parts of any more): the stream stops.
        refused = chunk.stream;
        streamer.Acknowledged(chunk.stream, absl::AbortedError("a snapshot of epoch 1; this server is at epoch 2"));
      }
    }
  }
  REQUIRE(ends[4] == SnapshotChunk::Kind::kCancelled);
  REQUIRE(ends[6] == SnapshotChunk::Kind::kCancelled);
  REQUIRE(ends[5] == SnapshotChunk::Kind::kCancelled);
  REQUIRE(refused != 0);
}

TEST_CASE("a part the replica could not load ends its stream as failed, others go on", "[shard_streamer]") {
  Fixture f;
  WriteRows(f.store.get(), 20000, 0.0f);
  ShardStreamer streamer(f.store.get(), &f.out);
  streamer.Stream(f.Cut(/*peer=*/1, /*shard=*/4));
  streamer.Stream(f.Cut(/*peer=*/1, /*shard=*/6));
  std::map<uint32_t, SnapshotChunk::Kind> ends;
  bool refused = false;
  while (ends.size() < 2) {
    for (SnapshotChunk& chunk : Next(f.out)) {
      if (chunk.kind == SnapshotChunk::Kind::kEnd || chunk.kind == SnapshotChunk::Kind::kCancelled ||
          chunk.kind == SnapshotChunk::Kind::kFailed) {
        ends[chunk.shard] = chunk.kind;
      } else if (chunk.shard == 4 && !refused) {
        refused = true;
        streamer.Acknowledged(chunk.stream, absl::ResourceExhaustedError("No space left on device"));
      } else {
        streamer.Acknowledged(chunk.stream, absl::OkStatus());
      }
    }
  }
  CHECK(ends[4] == SnapshotChunk::Kind::kFailed);
  CHECK(ends[6] == SnapshotChunk::Kind::kEnd);
}

TEST_CASE("tries to stream a shard again back off from 1 s to 30 s and start over once it arrives",
          "[shard_streamer]") {
  using Clock = SnapshotRetries::Clock;
  SnapshotRetries retries;
  const Clock::time_point t0 = Clock::now();
  CHECK(retries.empty());
  CHECK(retries.Failed(4, 1, t0) == std::chrono::seconds(1));
  CHECK(retries.TakeDue(t0).empty());
  CHECK(retries.TakeDue(t0 + std::chrono::seconds(1)) == std::vector<std::pair<uint32_t, uint32_t>>{{4, 1}});
  CHECK(retries.TakeDue(t0 + std::chrono::seconds(2)).empty());  // each try once
  CHECK(retries.empty());
  std::vector<long> delays;
  for (int i = 0; i < 7; ++i) {
    delays.push_back(std::chrono::duration_cast<std::chrono::seconds>(retries.Failed(4, 1, t0)).count());
  }
  CHECK(delays == std::vector<long>{2, 4, 8, 16, 30, 30, 30});
  retries.Failed(5, 2, t0);
  auto due = retries.TakeDue(t0 + std::chrono::seconds(30));
  CHECK(due == std::vector<std::pair<uint32_t, uint32_t>>{{4, 1}, {5, 2}});
  retries.Succeeded(4, 1);
  CHECK(retries.Failed(4, 1, t0) == std::chrono::seconds(1));
}

}  // namespace
}  // namespace sparta::shard_streamer_test
