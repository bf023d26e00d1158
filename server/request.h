// Request: one data-plane request in flight inside a server, from the moment
// the I/O thread decodes it until the last executor that works on it is
// done. The payload stays in the received zmq frames; executors read keys
// and gradients through views of them and write pulled rows straight into
// `values`, each at the positions of its own keys (disjoint, so no locks).
//
// Shared by the I/O thread and the executors through shared_ptr; `pending`
// counts the executors still working; whoever brings it to zero hands the
// request back to the I/O thread for the reply.
#ifndef SPARTA_SERVER_REQUEST_H_
#define SPARTA_SERVER_REQUEST_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "common/message.h"
#include "common/uninitialized_vector.h"
#include "sparta.pb.h"
#include "server/table_registry.h"
#include "server/version_overlay.h"

namespace sparta {

struct Request {
  Message message;
  const TableEntry* table = nullptr;
  std::span<const uint64_t> keys;
  std::span<const float> grads;      // PUSH only
  pb::ValueType dtype = pb::FP32;    // of `grads_half` (PUSH) or of the reply (PULL)
  // PULL replies, num_keys * dim each, fp32 or fp16: left uninitialized,
  // as every key's row is written by the executor that holds it.
  UninitializedVector<float> values;
  UninitializedVector<uint16_t> half_values;
  std::span<const uint16_t> grads_half;  // PUSH in fp16
  std::span<const uint32_t> counts;  // PUSH with key_counts: occurrences of each key
  std::vector<uint32_t> count_scratch;
  std::vector<uint16_t> half_scratch;
  std::vector<uint64_t> key_scratch; // backing store if a frame was unaligned
  std::vector<float> grad_scratch;
  // PULL from a serving cluster's front-end: the staged versions above the
  // rows held that its version reads, newest first (ServedVersions::For).
  std::vector<std::shared_ptr<const VersionOverlay>> overlays;
  std::atomic<int> pending{0};
  // Set by an executor whose write-ahead log write failed: the push was
  // applied in memory but is not durable, so it must not be acknowledged.
  std::atomic<bool> not_durable{false};
  // Set by an executor that could not read cold rows from the store: the
  // request is answered with an error instead of with wrong values.
  std::atomic<bool> read_failed{false};

  // I/O thread only: a push is answered once applied here and, with
  // storage.ack "all", acknowledged by every replica it was forwarded to.
  bool applied = false;
  int acks_pending = 0;
  absl::Status replica_error;
  // A push this server leads: the shards it updates, counted in flight
  // until it is answered (a shard is handed off only with none in flight).
  std::vector<uint32_t> in_flight_shards;
};

// The part of a request that one executor handles: positions of the keys
// (in request order) that fall into the executor's shards, and for each the
// executor-local shard index.
struct ShardTask {
  std::shared_ptr<Request> request;
  std::vector<uint32_t> positions;
  std::vector<uint32_t> local_shards;
  // Instead of a request: work that must run on the executor's thread in
  // order with the requests (e.g. persisting rows for a checkpoint).
  std::function<void()> control;
  // The executor's own work, run as soon as it is taken, before anything
  // waiting (a cold read has come back).
  std::function<void()> wake;
};

}  // namespace sparta

#endif  // SPARTA_SERVER_REQUEST_H_
