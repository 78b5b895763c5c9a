// Jinja chat-template parsing and rendering on arbitrary templates with a fixed, realistic context.
// Rendering is bounded by the engine's own limits; a template that loops or recurses forever must
// fail with vlm::Error rather than hang or overflow the stack.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "text/chat_template.h"

namespace {
const nlohmann::json& context() {
  static const nlohmann::json ctx = nlohmann::json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
      {"role": "assistant", "content": "A cat."},
      {"role": "user", "content": "Thanks"}
    ],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_vision_id": false, "n": 3, "x": 2.5, "s": "abc", "l": [1, 2, 3], "d": {"a": 1, "b": [true, null]}
  })");
  return ctx;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string source(reinterpret_cast<const char*>(data), size);
  vlm::JinjaOptions options;
  if (size > 0) {
    options.trim_blocks = data[0] & 1;
    options.lstrip_blocks = data[0] & 2;
    options.keep_trailing_newline = data[0] & 4;
  }
  try {
    vlm::render_jinja(source, context(), options);
  } catch (const vlm::Error&) {
  }
  return 0;
}
