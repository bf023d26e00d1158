// Message: one decoded Sparta wire message, and the functions that move it
// over a ZeroMQ socket.
//
// On the wire a message is [routing id?][Header][raw frame]... (see
// proto/sparta.proto). Receiving validates the header and the size of every
// raw frame against it before anyone looks at the payload: a malformed
// message becomes an error status, never a crash. Payload frames stay in the
// zmq::message_t they arrived in; FrameView() hands them out as typed views.
//
// Not thread-safe: a Message belongs to one thread at a time; the socket
// functions must be called by the thread that owns the socket.
#ifndef SPARTA_COMMON_MESSAGE_H_
#define SPARTA_COMMON_MESSAGE_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "sparta.pb.h"

namespace sparta {

// Upper bounds a receiver enforces; anything larger is dropped as malformed.
inline constexpr size_t kMaxHeaderBytes = 1 << 20;
inline constexpr size_t kMaxFrames = 8;
inline constexpr uint32_t kMaxKeysPerMessage = 1u << 27;
inline constexpr uint32_t kMaxDim = 1u << 16;
inline constexpr int64_t kMaxFrameBytes = int64_t{1} << 32;  // 4 GiB

struct Message {
  std::optional<zmq::message_t> routing_id;  // set when read from a ROUTER
  pb::Header header;
  std::vector<zmq::message_t> frames;  // payload frames after the header
  // The TCP connection it came over (its file descriptor in ZeroMQ's I/O
  // thread), for telling which peer a closed connection was; -1 if unknown.
  int source_fd = -1;
};

// Receives one whole multipart message if one is waiting (non-blocking).
// Returns std::nullopt when nothing is waiting, an error for a malformed
// message (which has then been consumed entirely), or the message.
absl::StatusOr<std::optional<Message>> ReceiveMessage(zmq::socket_t& socket, bool from_router);

// Decodes the parts of one multipart message (routing id first when
// `from_router`), as ReceiveMessage does: the header is parsed and checked
// against the payload frames. The decoder every fuzz target drives.
absl::StatusOr<Message> DecodeMessage(std::vector<zmq::message_t> parts, bool from_router);

// Checks the header against the payload frames for the message type.
absl::Status ValidateMessage(const Message& m);

// Sends header + payload frames (moved, not copied). `routing_id` addresses
// a peer of a ROUTER socket. Never blocks forever: a full peer queue is an
// error (the caller decides whether to retry or drop).
absl::Status SendMessage(zmq::socket_t& socket, const pb::Header& header,
                         std::vector<zmq::message_t>* frames = nullptr,
                         const zmq::message_t* routing_id = nullptr);

// Wraps a vector's buffer in a frame without copying it; the frame owns the
// vector and frees it once ZeroMQ has sent it.
template <class T, class Allocator>
zmq::message_t FrameFromVector(std::vector<T, Allocator>&& v) {
  using Vector = std::vector<T, Allocator>;
  if (v.empty()) return zmq::message_t();
  auto* owned = new Vector(std::move(v));
  return zmq::message_t(
      owned->data(), owned->size() * sizeof(T), [](void*, void* hint) { delete static_cast<Vector*>(hint); },
      owned);
}

// A typed read-only view of a frame. Frames of this protocol are multiples of
// sizeof(T); a frame's buffer is aligned except for tiny messages that ZeroMQ
// stores inline, which are copied into `scratch` first.
template <class T>
std::span<const T> FrameView(const zmq::message_t& frame, std::vector<T>* scratch) {
  const size_t n = frame.size() / sizeof(T);
  const void* data = frame.data();
  if (reinterpret_cast<uintptr_t>(data) % alignof(T) == 0) {
    return {static_cast<const T*>(data), n};
  }
  scratch->resize(n);
  std::memcpy(scratch->data(), data, n * sizeof(T));
  return {scratch->data(), n};
}

const char* MsgTypeName(pb::MsgType type);

// Bytes per value on the wire.
inline size_t ValueBytes(pb::ValueType type) { return type == pb::FP16 ? 2 : 4; }

}  // namespace sparta

#endif  // SPARTA_COMMON_MESSAGE_H_
