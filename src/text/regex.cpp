#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/regex.h"

#include <pcre2.h>

#include "core/error.h"
#include "text/unicode.h"

namespace vlm::text {

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() {
    if (code) pcre2_code_free(code);
  }
};

Regex::Regex(const std::string& pattern) : code_(std::make_shared<Code>()) {
  int err = 0;
  PCRE2_SIZE off = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                              &off, nullptr);
  if (!code_->code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    fail("tokenizer regex '", pattern, "' at offset ", off, ": ", reinterpret_cast<const char*>(buf));
  }
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    int rc = pcre2_match(code_->code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof(buf));
      fail("tokenizer regex match failed: ", reinterpret_cast<const char*>(buf));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {  // skip an empty match by one whole character
      if (b >= s.size()) break;
      pos = b + utf8_len(static_cast<unsigned char>(s[b]));
    }
  }
  pcre2_match_data_free(md);
  return out;
}

std::vector<std::pair<size_t, size_t>> find_all_literal(std::string_view s, std::string_view needle) {
  std::vector<std::pair<size_t, size_t>> out;
  if (needle.empty()) return out;
  for (size_t p = s.find(needle); p != std::string_view::npos; p = s.find(needle, p + needle.size()))
    out.emplace_back(p, p + needle.size());
  return out;
}

Pattern::Pattern(const json& p, const std::string& where) {
  if (p.is_string()) {
    literal = p.get<std::string>();
  } else if (p.is_object() && p.contains("String")) {
    literal = json_require<std::string>(p, "String", where);
  } else if (p.is_object() && p.contains("Regex")) {
    regex = std::make_unique<Regex>(json_require<std::string>(p, "Regex", where));
  } else {
    fail(where, ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
  }
}

}  // namespace vlm::text
