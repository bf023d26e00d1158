#include "common/message.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/printable.h"
#include "common/status_macros.h"

#include <google/protobuf/stubs/logging.h>

namespace sparta {
namespace {

absl::Status Malformed(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed message: ", what));
}

absl::Status ExpectFrameBytes(const zmq::message_t& frame, uint64_t expected, const char* name) {
  if (frame.size() != expected) {
    return Malformed(absl::StrCat(name, " frame has ", frame.size(), " bytes, header implies ", expected));
  }
  return absl::OkStatus();
}

}  // namespace

const char* MsgTypeName(pb::MsgType type) {
  return pb::MsgType_IsValid(type) ? pb::MsgType_Name(type).c_str() : "INVALID";
}

absl::Status ValidateMessage(const Message& m) {
  const pb::Header& h = m.header;
  const size_t nframes = m.frames.size();
  const uint64_t key_bytes = uint64_t{h.num_keys()} * sizeof(uint64_t);
  if (!pb::ValueType_IsValid(h.dtype())) return Malformed(absl::StrCat("unknown value type ", h.dtype()));
  const uint64_t value_bytes = uint64_t{h.num_keys()} * h.dim() * ValueBytes(h.dtype());
  switch (h.type()) {
    case pb::PULL:
      if (nframes != 1) return Malformed(absl::StrCat("PULL needs 1 payload frame, got ", nframes));
      if (h.num_keys() > kMaxKeysPerMessage) return Malformed("too many keys");
      return ExpectFrameBytes(m.frames[0], key_bytes, "keys");
    case pb::PUSH:
    case pb::REPLICATE:
    case pb::SHARD_SNAPSHOT: {
      // A push may carry a third frame: each key's occurrences (key_counts);
      // a snapshot, the admission counters of its table shard, and its last
      // message the shard's duplicate records.
      const bool third = h.type() == pb::SHARD_SNAPSHOT ? h.admission_sketch() || h.last() : h.key_counts();
      const size_t expected = third ? 3 : 2;
      if (nframes != expected) {
        return Malformed(absl::StrCat(MsgTypeName(h.type()), " needs ", expected, " payload frames, got ", nframes));
      }
      if (expected == 3 && h.type() != pb::SHARD_SNAPSHOT) {
        if (auto st = ExpectFrameBytes(m.frames[2], uint64_t{h.num_keys()} * sizeof(uint32_t), "counts"); !st.ok()) {
          return st;
        }
      }
      if (h.type() == pb::SHARD_SNAPSHOT && h.last() && m.frames[2].size() % sizeof(uint64_t) != 0) {
        return Malformed(absl::StrCat("duplicate records of ", m.frames[2].size(), " bytes"));
      }
      if (h.num_keys() > kMaxKeysPerMessage) return Malformed("too many keys");
      // A snapshot's rows carry the optimizer state too (at most 3x dim).
      const uint32_t max_dim = h.type() == pb::SHARD_SNAPSHOT ? 4 * kMaxDim : kMaxDim;
      if (h.dim() == 0 || h.dim() > max_dim) return Malformed(absl::StrCat("bad dim ", h.dim()));
      if (auto st = ExpectFrameBytes(m.frames[0], key_bytes, "keys"); !st.ok()) return st;
      return ExpectFrameBytes(m.frames[1], value_bytes, "values");
    }
    case pb::PREDICT:
      if (nframes != 1) return Malformed(absl::StrCat("PREDICT needs 1 payload frame, got ", nframes));
      if (h.num_keys() == 0 || h.num_keys() > kMaxKeysPerMessage) return Malformed("bad instance count");
      if (m.frames[0].size() < h.num_keys()) return Malformed("fewer bytes than instances");
      return absl::OkStatus();
    case pb::RESPONSE:
      if (nframes > 1) return Malformed(absl::StrCat("RESPONSE has ", nframes, " payload frames"));
      if (nframes == 1) {
        if (h.dim() > kMaxDim) return Malformed(absl::StrCat("bad dim ", h.dim()));
        return ExpectFrameBytes(m.frames[0], value_bytes, "values");
      }
      return absl::OkStatus();
    case pb::MSG_UNKNOWN:
      return Malformed("message type missing");
    default:
      if (!pb::MsgType_IsValid(h.type())) return Malformed(absl::StrCat("unknown type ", h.type()));
      if (nframes != 0) return Malformed(absl::StrCat(MsgTypeName(h.type()), " carries no payload frames"));
      return absl::OkStatus();
  }
}

absl::StatusOr<std::optional<Message>> ReceiveMessage(zmq::socket_t& socket, bool from_router) {
  std::vector<zmq::message_t> parts;
  bool too_many = false;
  while (true) {
    zmq::message_t part;
    auto got = socket.recv(part, parts.empty() ? zmq::recv_flags::dontwait : zmq::recv_flags::none);
    if (!got) {
      if (parts.empty()) return std::optional<Message>();
      break;  // cannot happen for a multipart message (atomic delivery)
    }
    const bool more = part.more();
    if (parts.size() < kMaxFrames + 2) {
      parts.push_back(std::move(part));
    } else {
      too_many = true;  // keep reading to consume the whole message
    }
    if (!more) break;
  }
  if (too_many) return Malformed("too many frames");
  // -1 (EINVAL) for a message that did not come over TCP (inproc). Asked
  // of the frames as they came off the wire: a ROUTER makes the routing-id
  // frame itself and often leaves its descriptor unset (measured: most
  // messages read -1 there), which left dead nodes unmapped and their
  // closed connections unnoticed.
  int source_fd = -1;
  for (size_t i = parts.size(); i-- > 0 && source_fd < 0;) source_fd = zmq_msg_get(parts[i].handle(), ZMQ_SRCFD);
  SPARTA_ASSIGN_OR_RETURN(Message m, DecodeMessage(std::move(parts), from_router));
  m.source_fd = source_fd;
  return std::optional<Message>(std::move(m));
}

namespace {
// libprotobuf logs an ERROR line for each string field with invalid UTF-8
// it is asked to parse: a peer sending such headers could flood the log
// (found by the message fuzzer). The decoder reports the failure itself, so
// protobuf's own lines go to the debug level.
void ProtobufLogToDebug(google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
  spdlog::debug("protobuf: {}:{}: {}", file, line, message);
}
}  // namespace

absl::StatusOr<Message> DecodeMessage(std::vector<zmq::message_t> parts, bool from_router) {
  static const bool quiet = [] {
    google::protobuf::SetLogHandler(&ProtobufLogToDebug);
    return true;
  }();
  (void)quiet;
  if (parts.size() > kMaxFrames + 2) return Malformed("too many frames");
  Message m;
  size_t next = 0;
  if (from_router) {
    if (parts.empty()) return Malformed("no routing id");
    m.routing_id = std::move(parts[next++]);
  }
  if (next >= parts.size()) return Malformed("no header frame");
  const zmq::message_t& header = parts[next++];
  if (header.size() > kMaxHeaderBytes) return Malformed(absl::StrCat("header of ", header.size(), " bytes"));
  if (!m.header.ParseFromArray(header.data(), static_cast<int>(header.size()))) {
    return Malformed("header is not a valid protobuf");
  }
  for (; next < parts.size(); ++next) m.frames.push_back(std::move(parts[next]));
  if (auto st = ValidateMessage(m); !st.ok()) return st;
  return m;
}

absl::Status SendMessage(zmq::socket_t& socket, const pb::Header& header,
                         std::vector<zmq::message_t>* frames, const zmq::message_t* routing_id) {
  const bool has_payload = frames != nullptr && !frames->empty();
  try {
    if (routing_id != nullptr) {
      zmq::message_t id(routing_id->data(), routing_id->size());
      if (!socket.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        return absl::UnavailableError("peer queue full");
      }
    }
    // An error may quote input from outside (a data line); a string field
    // that is not UTF-8 would make the whole header undecodable.
    std::string bytes;
    if (!header.error().empty() && !IsValidUtf8(header.error())) {
      pb::Header fixed = header;
      fixed.set_error(Printable(header.error()));
      bytes = fixed.SerializeAsString();
    } else {
      bytes = header.SerializeAsString();
    }
    zmq::message_t head(bytes.data(), bytes.size());
    auto flags = has_payload ? zmq::send_flags::sndmore : zmq::send_flags::none;
    // After the first frame, the rest of a multipart message is never refused.
    if (!socket.send(head, routing_id == nullptr ? flags | zmq::send_flags::dontwait : flags)) {
      return absl::UnavailableError("peer queue full");
    }
    if (has_payload) {
      for (size_t i = 0; i < frames->size(); ++i) {
        socket.send((*frames)[i], i + 1 < frames->size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
      frames->clear();
    }
  } catch (const zmq::error_t& e) {
    // EHOSTUNREACH from a ROUTER with router_mandatory: the peer has gone.
    return absl::UnavailableError(absl::StrCat("send failed: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace sparta
