#include "text/unicode.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <memory>

#include "core/error.h"

namespace vlm::text {

int32_t utf8_decode(std::string_view s, size_t i, size_t* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  unsigned char b = p[i];
  *len = 1;
  if (b < 0x80) return b;
  int32_t cp;
  size_t need;
  int32_t min;
  if ((b & 0xE0) == 0xC0) {
    cp = b & 0x1F, need = 1, min = 0x80;
  } else if ((b & 0xF0) == 0xE0) {
    cp = b & 0x0F, need = 2, min = 0x800;
  } else if ((b & 0xF8) == 0xF0) {
    cp = b & 0x07, need = 3, min = 0x10000;
  } else {
    return -1;
  }
  if (i + need >= n) return -1;
  for (size_t k = 1; k <= need; ++k) {
    unsigned char c = p[i + k];
    if ((c & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  *len = need + 1;
  return cp;
}

void utf8_append(std::string& out, int32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool utf8_valid(std::string_view s) {
  size_t len;
  for (size_t i = 0; i < s.size(); i += len) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      len = 1;
      continue;
    }
    if (utf8_decode(s, i, &len) < 0) return false;
  }
  return true;
}

// Length of the longest prefix of s[i..] that could start a valid sequence (Unicode "maximal subpart").
static size_t maximal_subpart(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  unsigned char b = p[i];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  size_t k = 1;
  for (; k <= need && i + k < s.size(); ++k) {
    unsigned char c = p[i + k];
    if (k == 1 ? (c < lo || c > hi) : (c & 0xC0) != 0x80) break;
  }
  return k;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t len;
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      out += s[i++];
      continue;
    }
    if (utf8_decode(s, i, &len) >= 0) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += maximal_subpart(s, i);
    }
  }
  return out;
}

bool is_whitespace(int32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_word_char(int32_t cp) {
  if (cp == '_') return true;
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
  auto c = utf8proc_category(cp);
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
         (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

bool is_punctuation(int32_t cp) {
  if (cp < 0x80)
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
  auto c = utf8proc_category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool is_numeric(int32_t cp) {
  auto c = utf8proc_category(cp);
  return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
}

bool is_control(int32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  auto c = utf8proc_category(cp);
  return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CN ||
         c == UTF8PROC_CATEGORY_CO || c == UTF8PROC_CATEGORY_CS;
}

bool is_chinese_char(int32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool is_combining_mark(int32_t cp) {
  return utf8proc_category(cp) == UTF8PROC_CATEGORY_MN;
}

namespace {

std::string utf8proc_normalize(std::string_view s, NormForm form) {
  int opts = UTF8PROC_STABLE;
  switch (form) {
    case NormForm::kNFC: opts |= UTF8PROC_COMPOSE; break;
    case NormForm::kNFD: opts |= UTF8PROC_DECOMPOSE; break;
    case NormForm::kNFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormForm::kNFKD: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                        &out, static_cast<utf8proc_option_t>(opts));
  if (n < 0) fail("unicode normalization failed: ", utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> holder(out, &std::free);
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

// Characters that are unchanged by the normal form, have combining class 0 and never combine with a
// preceding character: a normalization boundary lies before each, so text between them normalizes alone.
bool is_stable_starter(int32_t cp, NormForm form) {
  if (cp < 0xA0) return true;
  if (form != NormForm::kNFC) return false;
  return cp < 0x300 || (cp >= 0x3040 && cp <= 0x3096) || (cp >= 0x30A0 && cp <= 0x30FF) ||
         (cp >= 0x3000 && cp <= 0x3029) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
         (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xFF01 && cp <= 0xFF5E);
}

}  // namespace

std::string unicode_normalize(std::string_view s, NormForm form) {
  // Only the stretches that contain an unstable character go through utf8proc (the slow part).
  std::string out;
  size_t clean_from = 0;  // start of text not yet copied
  size_t seg = 0;         // start of the current boundary-to-boundary segment
  bool dirty = false;
  size_t len;
  for (size_t i = 0; i < s.size(); i += len) {
    int32_t cp = static_cast<unsigned char>(s[i]) < 0x80 ? (len = 1, s[i]) : utf8_decode(s, i, &len);
    if (is_stable_starter(cp, form)) {
      if (dirty) {
        out.append(s.substr(clean_from, seg - clean_from));
        out += utf8proc_normalize(s.substr(seg, i - seg), form);
        clean_from = i;
        dirty = false;
      }
      seg = i;
    } else {
      dirty = true;
    }
  }
  if (clean_from == 0 && !dirty) return std::string(s);
  out.append(s.substr(clean_from, seg - clean_from));
  if (dirty)
    out += utf8proc_normalize(s.substr(seg), form);
  else
    out.append(s.substr(seg));
  return out;
}

std::string to_lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t len;
  for (size_t i = 0; i < s.size(); i += len) {
    int32_t cp = utf8_decode(s, i, &len);
    if (cp < 0) {
      out += s[i];
    } else if (cp < 0x80) {
      out += static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    } else if (cp == 0x130) {  // full mapping of 'İ' is "i̇", which the simple mapping lacks
      out += "i\xCC\x87";
    } else {
      utf8_append(out, utf8proc_tolower(cp));
    }
  }
  return out;
}

namespace {
struct ByteAlphabet {
  std::array<std::string, 256> to;
  std::array<int16_t, 324> from;  // code points of the alphabet are all < 324
  ByteAlphabet() {
    from.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      int cp = printable ? b : 256 + extra++;
      utf8_append(to[b], cp);
      from[cp] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t b) {
  return alphabet().to[b];
}
int byte_from_unicode(int32_t cp) {
  return cp >= 0 && cp < 324 ? alphabet().from[cp] : -1;
}

}  // namespace vlm::text
