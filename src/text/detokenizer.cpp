// Incremental detokenization: re-decodes the ids so far (so spacing rules of the decoder apply exactly as
// in a full decode) and releases only text that later ids cannot change.
#include <cctype>

#include "text/tokenizer.h"

namespace vlm {
namespace {

// Bytes of `s` that are safe to emit: drop a trailing run of U+FFFD (an incomplete UTF-8 sequence that
// the next id may complete) and, when `hold_space`, a trailing run of spaces (clean-up may remove them).
size_t stable_prefix(const std::string& s, bool hold_space) {
  size_t n = s.size();
  while (true) {
    if (n >= 3 && s.compare(n - 3, 3, "\xEF\xBF\xBD") == 0) {
      n -= 3;
    } else if (hold_space && n > 0 && s[n - 1] == ' ') {
      --n;
    } else {
      return n;
    }
  }
}

// "<0xNN>" byte-fallback pieces: HF's ByteFallback decoder turns a whole run of them into U+FFFDs when the
// run is not valid UTF-8, so text decoded from a trailing run may still be retracted by the next byte.
bool is_byte_piece(const std::string& t) {
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]));
}

}  // namespace

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(&tokenizer), skip_special_(skip_special_tokens) {}

std::string StreamingDetokenizer::push(int32_t id) {
  ids_.push_back(id);
  size_t settled = ids_.size();
  while (settled > 0 && is_byte_piece(tok_->id_to_token(ids_[settled - 1]))) --settled;
  std::string text =
      settled == ids_.size()
          ? tok_->decode(ids_, skip_special_)
          : tok_->decode(std::vector<int32_t>(ids_.begin(), ids_.begin() + static_cast<ptrdiff_t>(settled)),
                         skip_special_);
  // Spaces are held back too: decoders such as WordPiece/clean-up can drop a space before the next token.
  size_t stable = stable_prefix(text, true);
  if (stable <= emitted_bytes_) return "";
  std::string out = text.substr(emitted_bytes_, stable - emitted_bytes_);
  emitted_bytes_ = stable;
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string text = tok_->decode(ids_, skip_special_);
  std::string out = text.size() > emitted_bytes_ ? text.substr(emitted_bytes_) : std::string();
  emitted_bytes_ = text.size();
  return out;
}

void StreamingDetokenizer::reset() {
  ids_.clear();
  emitted_bytes_ = 0;
}

}  // namespace vlm
