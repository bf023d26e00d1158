// libFuzzer target: wire messages through the decoder every daemon runs on
// what it receives (header parse + checks of the payload frames against it),
// then the typed views a server takes of an accepted message's frames.
#include <cstdlib>
#include <vector>

#include <zmq.hpp>

#include "common/message.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<zmq::message_t> parts;
  for (const std::string& frame : sparta::fuzz::SplitFrames(data, size)) parts.emplace_back(frame.data(), frame.size());
  const bool from_router = size > 0 && (data[0] & 1);
  auto message = sparta::DecodeMessage(std::move(parts), from_router);
  if (!message.ok()) return 0;
  const sparta::pb::Header& h = message->header;
  if (h.type() == sparta::pb::PULL || h.type() == sparta::pb::PUSH || h.type() == sparta::pb::REPLICATE) {
    // What the validator promised: frames exactly as large as the header says.
    std::vector<uint64_t> key_scratch;
    auto keys = sparta::FrameView<uint64_t>(message->frames[0], &key_scratch);
    if (keys.size() != h.num_keys()) std::abort();
    uint64_t sum = 0;
    for (uint64_t k : keys) sum += k;  // every key is readable
    if (h.type() != sparta::pb::PULL) {
      const size_t values = message->frames[1].size() / sparta::ValueBytes(h.dtype());
      if (values != size_t{h.num_keys()} * h.dim()) std::abort();
    }
    (void)sum;
  }
  return 0;
}
