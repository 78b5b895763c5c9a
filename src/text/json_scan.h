// A minimal JSON scanner over raw text. tokenizer.json is mostly one huge vocab object and merge list;
// scanning those directly (instead of building a generic DOM) keeps loading within ~100 ms.
#pragma once
#include <functional>
#include <string>
#include <string_view>

namespace vlm::text {

class JsonScanner {
 public:
  JsonScanner(std::string_view text, std::string where) : s_(text), where_(std::move(where)) {}
  size_t skip_ws(size_t i) const;
  // End offset of the JSON value starting at i (whitespace skipped).
  size_t skip_value(size_t i) const;
  // Parses the string literal at i into `out` (escapes decoded); returns the offset after it.
  size_t parse_string(size_t i, std::string& out) const;
  // Parses an integer or float number at i.
  size_t parse_number(size_t i, double& out) const;
  // Calls fn(key, value_begin) for each member of the object at i; fn returns the value's end. Returns end.
  size_t for_each_member(size_t i, const std::function<size_t(const std::string&, size_t)>& fn) const;
  // Calls fn(element_begin) for each element of the array at i; fn returns the element's end. Returns end.
  size_t for_each_element(size_t i, const std::function<size_t(size_t)>& fn) const;
  char at(size_t i) const { return i < s_.size() ? s_[i] : '\0'; }
  std::string_view text() const { return s_; }
  [[noreturn]] void error(size_t i, const char* what) const;

 private:
  std::string_view s_;
  std::string where_;
};

}  // namespace vlm::text
