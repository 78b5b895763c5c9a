#include "text/json_scan.h"

#include <cstdlib>

#include "core/error.h"
#include "text/unicode.h"

namespace vlm::text {

void JsonScanner::error(size_t i, const char* what) const {
  fail(where_, ": malformed JSON at byte ", i, ": ", what);
}

size_t JsonScanner::skip_ws(size_t i) const {
  while (i < s_.size() && (s_[i] == ' ' || s_[i] == '\n' || s_[i] == '\r' || s_[i] == '\t')) ++i;
  return i;
}

size_t JsonScanner::skip_value(size_t i) const {
  i = skip_ws(i);
  char c = at(i);
  if (c == '"') {
    for (++i; i < s_.size(); ++i) {
      if (s_[i] == '\\') {
        ++i;
      } else if (s_[i] == '"') {
        return i + 1;
      }
    }
    error(i, "unterminated string");
  }
  if (c == '{' || c == '[') {
    int depth = 0;
    for (; i < s_.size(); ++i) {
      char d = s_[i];
      if (d == '"') {
        i = skip_value(i) - 1;
      } else if (d == '{' || d == '[') {
        ++depth;
      } else if (d == '}' || d == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    error(i, "unterminated container");
  }
  size_t b = i;
  while (i < s_.size() && s_[i] != ',' && s_[i] != '}' && s_[i] != ']' && s_[i] != ' ' && s_[i] != '\n' &&
         s_[i] != '\r' && s_[i] != '\t')
    ++i;
  if (i == b) error(i, "value expected");
  return i;
}

static int hex4(std::string_view s, size_t i) {
  if (i + 4 > s.size()) return -1;
  int v = 0;
  for (size_t k = i; k < i + 4; ++k) {
    char c = s[k];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

size_t JsonScanner::parse_string(size_t i, std::string& out) const {
  i = skip_ws(i);
  if (at(i) != '"') error(i, "string expected");
  out.clear();
  ++i;
  while (true) {
    size_t b = i;
    while (i < s_.size() && s_[i] != '"' && s_[i] != '\\') ++i;
    out.append(s_.data() + b, i - b);
    if (i >= s_.size()) error(i, "unterminated string");
    if (s_[i] == '"') return i + 1;
    char e = at(i + 1);
    i += 2;
    switch (e) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        int cp = hex4(s_, i);
        if (cp < 0) error(i, "bad \\u escape");
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && at(i) == '\\' && at(i + 1) == 'u') {
          int lo = hex4(s_, i + 2);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // lone surrogate
        utf8_append(out, cp);
        break;
      }
      default: error(i, "bad escape");
    }
  }
}

size_t JsonScanner::parse_number(size_t i, double& out) const {
  i = skip_ws(i);
  size_t e = skip_value(i);
  std::string tmp(s_.substr(i, e - i));
  char* end = nullptr;
  out = std::strtod(tmp.c_str(), &end);
  if (end != tmp.c_str() + tmp.size()) error(i, "number expected");
  return e;
}

size_t JsonScanner::for_each_member(size_t i, const std::function<size_t(const std::string&, size_t)>& fn) const {
  i = skip_ws(i);
  if (at(i) != '{') error(i, "object expected");
  i = skip_ws(i + 1);
  if (at(i) == '}') return i + 1;
  std::string key;
  while (true) {
    i = parse_string(i, key);
    i = skip_ws(i);
    if (at(i) != ':') error(i, "':' expected");
    i = skip_ws(fn(key, skip_ws(i + 1)));
    if (at(i) == ',') {
      i = skip_ws(i + 1);
    } else if (at(i) == '}') {
      return i + 1;
    } else {
      error(i, "',' or '}' expected");
    }
  }
}

size_t JsonScanner::for_each_element(size_t i, const std::function<size_t(size_t)>& fn) const {
  i = skip_ws(i);
  if (at(i) != '[') error(i, "array expected");
  i = skip_ws(i + 1);
  if (at(i) == ']') return i + 1;
  while (true) {
    i = skip_ws(fn(skip_ws(i)));
    if (at(i) == ',') {
      i = skip_ws(i + 1);
    } else if (at(i) == ']') {
      return i + 1;
    } else {
      error(i, "',' or ']' expected");
    }
  }
}

}  // namespace vlm::text
