// Printable(): outside text made safe for logs and Protobuf string fields,
// and the message encoder that relies on it.
#include <catch2/catch.hpp>

#include "common/message.h"
#include "common/printable.h"

namespace sparta::printable_test {
namespace {

TEST_CASE("valid UTF-8 without control characters passes unchanged") {
  const std::string text = "label must be 0 or 1, got 'é€😀'\tend";
  CHECK(IsValidUtf8(text));
  CHECK(Printable(text) == text);
}

TEST_CASE("bad bytes and control characters are shown escaped") {
  CHECK_FALSE(IsValidUtf8("a\xff" "b"));
  CHECK(Printable("a\xff" "b") == "a\\xFFb");
  CHECK(Printable("bell\x07 esc\x1b[2J") == "bell\\x07 esc\\x1B[2J");
  // Truncated, overlong and surrogate sequences are not UTF-8.
  CHECK(Printable("\xe2\x82") == "\\xE2\\x82");
  CHECK(Printable("\xc0\xaf") == "\\xC0\\xAF");
  CHECK(Printable("\xed\xa0\x80") == "\\xED\\xA0\\x80");
  CHECK(IsValidUtf8(Printable("\xff\xfe\x80 tail")));
}

TEST_CASE("an error quoting invalid UTF-8 still reaches the peer, escaped") {
  zmq::context_t context(1);
  zmq::socket_t sender(context, zmq::socket_type::pair), receiver(context, zmq::socket_type::pair);
  receiver.bind("inproc://printable");
  sender.connect("inproc://printable");
  pb::Header h;
  h.set_type(pb::WORKER_DONE);
  h.set_error("data.txt:3: label must be 0 or 1, got '\xff\xfe'");
  REQUIRE(SendMessage(sender, h, nullptr, nullptr).ok());
  auto got = ReceiveMessage(receiver, /*from_router=*/false);
  zmq::pollitem_t item{receiver.handle(), 0, ZMQ_POLLIN, 0};
  while (got.ok() && !got->has_value()) {
    zmq::poll(&item, 1, std::chrono::milliseconds(1000));
    got = ReceiveMessage(receiver, false);
  }
  REQUIRE(got.ok());
  CHECK((*got)->header.error() == "data.txt:3: label must be 0 or 1, got '\\xFF\\xFE'");
}

}  // namespace
}  // namespace sparta::printable_test
