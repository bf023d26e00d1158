// ReceivedWithin(): what a test's ROUTER socket, playing a server or a
// replica, gets next, if a message comes within a time. For unit tests that
// talk to the real client over real ZeroMQ sockets.
#ifndef SPARTA_TESTS_UNIT_RECEIVED_WITHIN_H_
#define SPARTA_TESTS_UNIT_RECEIVED_WITHIN_H_

#include <chrono>
#include <optional>

#include <catch2/catch.hpp>
#include <zmq.hpp>

#include "common/message.h"

namespace sparta {

inline std::optional<Message> ReceivedWithin(zmq::socket_t& router, int ms) {
  zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::milliseconds(ms)) == 0) return std::nullopt;
  auto got = ReceiveMessage(router, /*from_router=*/true);
  REQUIRE(got.ok());
  return *std::move(*got);
}

}  // namespace sparta

#endif  // SPARTA_TESTS_UNIT_RECEIVED_WITHIN_H_
