// Safetensors header parsing on arbitrary file images; every accepted tensor is read end to end so
// that an offset the validator let through past the buffer shows up under ASan.
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A private copy sized exactly to the input, so reads past the end hit ASan's redzone.
  std::vector<char> buf(data, data + size);
  try {
    auto f = vlm::SafetensorsFile::from_buffer(buf.data(), buf.size(), "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const auto& [name, e] : f->entries()) {
      vlm::Tensor t = f->tensor(name);
      const uint8_t* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ p[i];
    }
    (void)sink;
  } catch (const vlm::Error&) {
  }
  return 0;
}
