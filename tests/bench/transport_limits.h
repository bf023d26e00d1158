// What the data plane could reach if Sparta added nothing: the limits that
// sparta-kv-bench reports its figures against, measured in the same run.
//
//   - RawRoundTrips: request/reply round trips per second of plain libzmq
//     (a DEALER and a ROUTER that answers each request with a small reply,
//     as a server acknowledges a push), with 1 or more requests in flight;
//   - RawOneWay: one-way throughput of plain libzmq messages of one size;
//   - UpdateRateLimit: Adagrad updates per second applied in this process
//     to a table of `rows` rows, through the server's own TableShard (index
//     and arena) and Optimizer, with no network and no threads. The table
//     is built once and measured as often as asked (filling 10M rows takes
//     seconds; a measurement takes a fraction of one).
//
// Each runs the two ends on two threads with a ZeroMQ context each (as two
// processes would have), over `endpoint` (tcp://127.0.0.1:* or an ipc://
// path). Nothing here is thread-safe; call from one thread.
#ifndef SPARTA_TESTS_BENCH_TRANSPORT_LIMITS_H_
#define SPARTA_TESTS_BENCH_TRANSPORT_LIMITS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sparta {

// Round trips per second of `request_bytes` requests, `window` in flight.
double RawRoundTrips(const std::string& endpoint, size_t request_bytes, int window, double min_seconds);

// Bytes per second of `message_bytes` messages sent one way.
double RawOneWay(const std::string& endpoint, size_t message_bytes, double min_seconds);

// Keys per second of Adagrad updates of `dim`-float rows, in requests of
// `keys_per_request` distinct random keys of a table filled with `rows` rows.
// Owns the table and the requests.
class UpdateRateLimit {
 public:
  UpdateRateLimit(uint64_t rows, uint32_t dim, size_t keys_per_request);
  ~UpdateRateLimit();
  UpdateRateLimit(const UpdateRateLimit&) = delete;
  UpdateRateLimit& operator=(const UpdateRateLimit&) = delete;

  // Updates for at least `min_seconds`; keys per second (0 if the optimizer
  // could not be made).
  double Measure(double min_seconds);

 private:
  struct Table;
  std::unique_ptr<Table> table_;
};

}  // namespace sparta

#endif  // SPARTA_TESTS_BENCH_TRANSPORT_LIMITS_H_
