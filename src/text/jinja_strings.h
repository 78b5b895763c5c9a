// UTF-8 and Python str helpers for the Jinja engine: Python strings are code point sequences, so
// len/slicing/upper/strip work on code points, with Unicode case mapping and whitespace.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace vlm::jinja {

// Invalid bytes decode as U+FFFD (never throws: templates may see arbitrary user text).
std::u32string utf8_decode(std::string_view s);
void utf8_append(std::string& out, char32_t c);
std::string utf8_encode(std::u32string_view s);
size_t utf8_length(std::string_view s);

bool is_printable(char32_t c);  // Python str.isprintable for one code point
bool is_space(char32_t c);      // Python str.isspace
std::string str_upper(std::string_view s);
std::string str_lower(std::string_view s);
std::string str_capitalize(std::string_view s);  // Python str.capitalize
std::string str_title(std::string_view s);       // Python str.title

// Python strip/lstrip/rstrip; `chars` == nullptr strips whitespace.
std::string str_strip(std::string_view s, const std::string* chars, bool left, bool right);
// Python str.split(sep, maxsplit); sep == nullptr splits on whitespace runs.
std::vector<std::string> str_split(std::string_view s, const std::string* sep, long maxsplit);
std::string str_replace(std::string_view s, std::string_view from, std::string_view to, long count);

}  // namespace vlm::jinja
