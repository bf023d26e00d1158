// Helpers shared by the fuzz targets: the input as lines, and the input as
// the frames of one multipart message.
#ifndef SPARTA_TESTS_FUZZ_FUZZ_INPUT_H_
#define SPARTA_TESTS_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "sparta/sdk/model.h"
#include "sparta/sdk/reader.h"

namespace sparta::fuzz {

// Frames encoded as [u16 little-endian length][bytes]...; a short tail is
// the last frame. At most 12 frames (the decoder must refuse more than it
// allows, but need not be fed hundreds).
inline std::vector<std::string> SplitFrames(const uint8_t* data, size_t size) {
  std::vector<std::string> frames;
  size_t at = 0;
  while (at < size && frames.size() < 12) {
    if (size - at < 2) {
      frames.emplace_back(reinterpret_cast<const char*>(data + at), size - at);
      break;
    }
    const size_t n = std::min<size_t>(data[at] | (size_t{data[at + 1]} << 8), size - at - 2);
    frames.emplace_back(reinterpret_cast<const char*>(data + at + 2), n);
    at += 2 + n;
  }
  return frames;
}

// Feeds every line of the input to `reader`, as the data loader does, and
// checks the contract: a refused line says why; an accepted one stays
// within the schema.
inline void FuzzReaderLines(Reader& reader, const uint8_t* data, size_t size) {
  const DataSchema schema = reader.schema();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    Example example;
    std::string error;
    if (!reader.Parse(line, &example, &error)) {
      if (error.empty()) std::abort();  // a refusal must say why
      continue;
    }
    if (example.label != 0 && example.label != 1) std::abort();
    if (example.dense.size() > schema.num_dense) std::abort();
    for (const auto& f : example.features) {
      if (f.field >= schema.num_fields) std::abort();
    }
  }
}

}  // namespace sparta::fuzz

#endif  // SPARTA_TESTS_FUZZ_FUZZ_INPUT_H_
