// UTF-8 and Unicode helpers shared by the tokenizer stages (decoding, lossy repair, character classes,
// normalization through utf8proc, and GPT-2's byte-to-printable-character alphabet).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace vlm::text {

// Decodes the code point at s[i]; sets `len` to its byte length. Returns -1 (len 1) for an invalid byte.
int32_t utf8_decode(std::string_view s, size_t i, size_t* len);
void utf8_append(std::string& out, int32_t cp);
// Byte length of the UTF-8 sequence introduced by lead byte `b` (1 for continuation/invalid bytes).
inline size_t utf8_len(unsigned char b) {
  return b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;
}
bool utf8_valid(std::string_view s);
// Like Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view s);

// Rust char::is_whitespace (Unicode White_Space).
bool is_whitespace(int32_t cp);
// Rust char::is_alphanumeric or '_' (regex \w-like, used for single_word added tokens).
bool is_word_char(int32_t cp);
bool is_punctuation(int32_t cp);  // ASCII punctuation or a Unicode P* category
bool is_numeric(int32_t cp);      // Unicode N* category
bool is_control(int32_t cp);      // BERT: C* categories except \t \n \r
bool is_chinese_char(int32_t cp);
bool is_combining_mark(int32_t cp);  // Mn

enum class NormForm { kNFC, kNFD, kNFKC, kNFKD };
// `s` must be valid UTF-8.
std::string unicode_normalize(std::string_view s, NormForm form);
std::string to_lowercase(std::string_view s);

// GPT-2 byte-level alphabet: byte -> UTF-8 of its printable stand-in, and the reverse (-1 if none).
const std::string& byte_to_unicode(uint8_t b);
int byte_from_unicode(int32_t cp);

}  // namespace vlm::text
