// Chat messages JSON (the CLI's --messages / the C API) -> UserInput. Paths are only recorded, never
// opened, so arbitrary inputs are safe to feed.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "vlm/vlm.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    vlm::UserInput::from_messages_json(text, "/nonexistent-base", "fuzz");
  } catch (const vlm::Error&) {
  }
  return 0;
}
