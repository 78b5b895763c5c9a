// PCRE2 (UTF + Unicode properties + JIT) pattern used by Split/Replace stages.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/json_file.h"

namespace vlm::text {

class Regex {
 public:
  explicit Regex(const std::string& pattern);  // throws vlm::Error naming the pattern
  // Non-overlapping, non-empty matches as [begin, end) byte ranges, left to right. `s` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

 private:
  struct Code;
  std::shared_ptr<Code> code_;
};

// Every [begin, end) occurrence of a literal `needle` (non-overlapping, left to right).
std::vector<std::pair<size_t, size_t>> find_all_literal(std::string_view s, std::string_view needle);

// A tokenizer.json pattern: {"String": "..."} (literal) or {"Regex": "..."}.
struct Pattern {
  Pattern(const json& cfg, const std::string& where);
  std::vector<std::pair<size_t, size_t>> find(std::string_view s) const {
    return regex ? regex->find_all(s) : find_all_literal(s, literal);
  }
  std::string literal;
  std::unique_ptr<Regex> regex;
};

}  // namespace vlm::text
