// Qwen2 tokenizer (byte-level BPE with a regex pre-tokenizer and added special tokens) on arbitrary
// bytes, including invalid UTF-8; decoding the ids must round-trip valid UTF-8 input exactly.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "text/tokenizer.h"

namespace {
const vlm::Tokenizer& tokenizer() {
  static const vlm::Tokenizer tok = vlm::Tokenizer::from_dir(VLM_SOURCE_DIR "/models/qwen2-vl-shapes-4bit");
  return tok;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const vlm::Tokenizer& tok = tokenizer();
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    std::vector<int32_t> ids = tok.encode(text, size % 2 == 0);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    std::string back = tok.decode(ids);
    (void)back;
    vlm::StreamingDetokenizer stream(tok, false);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (streamed != back) std::abort();
  } catch (const vlm::Error&) {
  }
  return 0;
}
