// ConfigureSocket's close: a socket closed while it is part-way through
// sending a multipart message, as the connection to its peer drops (the
// peer exits at the same moment, as every daemon of an aborted job does),
// must not abort the process. With no linger, libzmq 4.3.4 does: its
// session, told to drop the socket's pipe at once, then sees the connection
// fail and tries to read the rest of the half-sent message from the pipe it
// has just stopped reading ("Resource temporarily unavailable
// (src/session_base.cpp:260)"). A worker ended with signal 6 this way in
// test_trust's full-disk test.
//
// Each round makes a socket pair whose sender (configured by
// ConfigureSocket) is stuck part-way through a message, since its peer
// reads no more than one message ahead; then the peer "exits" (its context
// closes, dropping the connection) while the sender closes. Without a
// linger about a quarter of the rounds abort, and the abort ends this test's
// process: ctest runs each test case in a process of its own, so it reports
// this one as failed. (Not in a forked child: ThreadSanitizer stops a child
// of a multi-threaded process, as OpenBLAS makes this one, that starts
// threads.)
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <zmq.hpp>

#include "absl/strings/str_cat.h"
#include "common/socket_util.h"

namespace sparta::socket_close_test {
namespace {

constexpr int kRounds = 40;

void Round(const std::string& endpoint, int round) {
  zmq::context_t peer_context(1);
  zmq::context_t context(1);
  zmq::socket_t peer(peer_context, zmq::socket_type::router);
  peer.set(zmq::sockopt::linger, 0);
  peer.set(zmq::sockopt::rcvhwm, 1);
  peer.set(zmq::sockopt::rcvbuf, 64 << 10);
  peer.bind(endpoint);
  zmq::socket_t sender(context, zmq::socket_type::dealer);
  ConfigureSocket(sender);
  sender.set(zmq::sockopt::sndbuf, 64 << 10);
  sender.connect(endpoint);
  const std::vector<char> payload(1 << 20);
  for (int m = 0; m < 4; ++m) {
    sender.send(zmq::buffer("header", 6), zmq::send_flags::sndmore);
    sender.send(zmq::buffer(payload), zmq::send_flags::sndmore);
    sender.send(zmq::buffer(payload), zmq::send_flags::none);
  }
  zmq::message_t first;
  (void)peer.recv(first);  // the connection is up and carrying data
  std::thread peer_exit([&] {
    peer.close();
    peer_context.close();
  });
  // Spreads the two closes over a fifth of a millisecond, round by round.
  usleep(static_cast<useconds_t>(round * 5));
  sender.close();
  context.close();
  peer_exit.join();
}

TEST_CASE("closing a socket half-way through a message as its peer exits does not abort", "[socket_util]") {
  const std::string folder = absl::StrCat("/tmp/sparta-socket-close-", getpid());
  std::filesystem::create_directories(folder);
  // Four at a time: each round's close waits out its linger.
  std::atomic<int> rounds{0};
  std::vector<std::thread> lanes;
  for (int lane = 0; lane < 4; ++lane) {
    lanes.emplace_back([&folder, &rounds, lane] {
      for (int round = lane; round < kRounds; round += 4) {
        Round(absl::StrCat("ipc://", folder, "/", round), round);
        rounds.fetch_add(1);
      }
    });
  }
  for (auto& lane : lanes) lane.join();
  std::filesystem::remove_all(folder);
  CHECK(rounds.load() == kRounds);
}

}  // namespace
}  // namespace sparta::socket_close_test
