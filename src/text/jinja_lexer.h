// Jinja2 lexer: splits a template into text and tag tokens, applying jinja2's whitespace rules
// (newline normalization, {%- -%} stripping, trim_blocks, lstrip_blocks, raw blocks, comments).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace vlm::jinja {

enum class TokenType { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, Eof };

struct Token {
  TokenType type;
  std::string text;  // text content, name, decoded string literal or operator
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1, col = 1;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

std::vector<Token> tokenize(const std::string& source, const LexerOptions& options);

// All template errors carry "line L, column C" so the user can find the construct.
template <typename... Parts>
[[noreturn]] void template_error(int line, int col, const Parts&... parts) {
  fail("chat template error at line ", line, ", column ", col, ": ", parts...);
}

}  // namespace vlm::jinja
