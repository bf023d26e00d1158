// libFuzzer target: libsvm lines through the built-in reader.
#include "tests/fuzz/fuzz_input.h"
#include "worker/data/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto reader = sparta::NewLibsvmReader();
  sparta::fuzz::FuzzReaderLines(*reader, data, size);
  return 0;
}
