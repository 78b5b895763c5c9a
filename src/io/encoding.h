// Text encodings found in URLs and data URLs.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vlm {

// Standard or URL-safe base64; whitespace is skipped, '=' only as trailing padding. nullopt when
// the text is not valid base64 (bad character, length or padding).
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text);

// %XX escapes decoded (malformed escapes are kept as they are).
std::string percent_decode(std::string_view text);

}  // namespace vlm
