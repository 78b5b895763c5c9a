#include "text/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "text/jinja_strings.h"

namespace vlm::jinja {
namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

// jinja2 normalizes every newline sequence to "\n" and drops one trailing newline by default.
std::string normalize(const std::string& src, bool keep_trailing_newline) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(const std::string& src, const LexerOptions& o) : src_(normalize(src, o.keep_trailing_newline)), opt_(o) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool strip_next = false;  // previous tag ended with "-": drop leading whitespace of the next text
    while (pos < src_.size()) {
      size_t tag = find_tag(pos);
      size_t text_begin = pos;
      if (strip_next) {
        while (text_begin < tag && is_ws(src_[text_begin])) ++text_begin;
        strip_next = false;
      }
      if (tag == std::string::npos) {
        emit_text(text_begin, src_.size());
        break;
      }
      char kind = src_[tag + 1];
      char mod = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      emit_text(text_begin, adjust_text_end(text_begin, tag, kind, mod));
      size_t inner = tag + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      if (kind == '#') {
        pos = lex_comment(tag, inner, strip_next);
      } else if (kind == '%' && is_raw_begin(inner)) {
        pos = lex_raw(tag, inner, strip_next);
      } else {
        pos = lex_tag(tag, inner, kind == '{', strip_next);
      }
    }
    tokens_.push_back(Token{TokenType::Eof, "", 0, 0, line_of(src_.size()), col_of(src_.size())});
    return std::move(tokens_);
  }

 private:
  int line_of(size_t p) const {
    return static_cast<int>(std::upper_bound(line_starts_.begin(), line_starts_.end(), p) - line_starts_.begin());
  }
  int col_of(size_t p) const { return static_cast<int>(p - line_starts_[line_of(p) - 1]) + 1; }

  size_t find_tag(size_t from) const {
    for (size_t p = src_.find('{', from); p != std::string::npos; p = src_.find('{', p + 1)) {
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) return p;
    }
    return std::string::npos;
  }

  // Where the text before a tag ends after "{%-" stripping or lstrip_blocks (jinja2 strips the
  // spaces/tabs before a block tag only when nothing else precedes it on its line).
  size_t adjust_text_end(size_t begin, size_t end, char kind, char mod) const {
    if (mod == '-') {
      while (end > begin && is_ws(src_[end - 1])) --end;
      return end;
    }
    if (kind == '{' || mod == '+' || !opt_.lstrip_blocks) return end;
    size_t l_pos = end;
    while (l_pos > begin && src_[l_pos - 1] != '\n') --l_pos;
    bool line_starting = l_pos > begin || begin == 0 || src_[begin - 1] == '\n';
    if (!line_starting) return end;
    for (size_t i = l_pos; i < end; ++i)
      if (src_[i] != ' ' && src_[i] != '\t') return end;
    return l_pos;
  }

  void emit_text(size_t b, size_t e) {
    if (e > b) tokens_.push_back(Token{TokenType::Text, src_.substr(b, e - b), 0, 0, line_of(b), col_of(b)});
  }

  // After a block/comment end: "-" strips following whitespace; otherwise trim_blocks eats one newline.
  size_t after_block_end(size_t p, char mod, bool& strip_next) const {
    if (mod == '-') {
      strip_next = true;
    } else if (mod != '+' && opt_.trim_blocks && p < src_.size() && src_[p] == '\n') {
      ++p;
    }
    return p;
  }

  size_t lex_comment(size_t tag, size_t inner, bool& strip_next) {
    size_t end = src_.find("#}", inner);
    if (end == std::string::npos) template_error(line_of(tag), col_of(tag), "unterminated comment");
    char mod = end > inner && src_[end - 1] == '-' ? '-' : '\0';
    return after_block_end(end + 2, mod, strip_next);
  }

  // Matches "\s*raw\s*[-+]?%}" at p; returns the position after it or npos.
  size_t match_word_tag(size_t p, const char* word, char* mod_out) const {
    while (p < src_.size() && is_ws(src_[p])) ++p;
    size_t n = std::char_traits<char>::length(word);
    if (src_.compare(p, n, word) != 0) return std::string::npos;
    p += n;
    if (p < src_.size() && is_name_char(src_[p])) return std::string::npos;
    while (p < src_.size() && is_ws(src_[p])) ++p;
    char mod = '\0';
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) mod = src_[p++];
    if (src_.compare(p, 2, "%}") != 0) return std::string::npos;
    if (mod_out) *mod_out = mod;
    return p + 2;
  }

  bool is_raw_begin(size_t inner) const { return match_word_tag(inner, "raw", nullptr) != std::string::npos; }

  size_t lex_raw(size_t tag, size_t inner, bool& strip_next) {
    char mod = '\0';
    size_t p = match_word_tag(inner, "raw", &mod);
    if (mod == '-')
      while (p < src_.size() && is_ws(src_[p])) ++p;
    for (size_t q = src_.find("{%", p); q != std::string::npos; q = src_.find("{%", q + 1)) {
      char emod = q + 2 < src_.size() ? src_[q + 2] : '\0';
      size_t qi = q + 2 + ((emod == '-' || emod == '+') ? 1 : 0);
      char end_mod = '\0';
      size_t after = match_word_tag(qi, "endraw", &end_mod);
      if (after == std::string::npos) continue;
      emit_text(p, adjust_text_end(p, q, '%', emod));
      return after_block_end(after, end_mod, strip_next);
    }
    template_error(line_of(tag), col_of(tag), "missing {% endraw %} for this raw block");
  }

  size_t lex_tag(size_t tag, size_t p, bool is_var, bool& strip_next) {
    tokens_.push_back(Token{is_var ? TokenType::VarBegin : TokenType::BlockBegin, "", 0, 0, line_of(tag), col_of(tag)});
    int depth = 0;
    bool after_dot = false;
    const char close = is_var ? '}' : '%';
    while (true) {
      while (p < src_.size() && is_ws(src_[p])) ++p;
      if (p >= src_.size())
        template_error(line_of(tag), col_of(tag), "unterminated ", is_var ? "'{{' expression" : "'{%' statement");
      int line = line_of(p), col = col_of(p);
      if (depth == 0) {
        char mod = '\0';
        size_t q = p;
        if ((src_[q] == '-' || (!is_var && src_[q] == '+')) && q + 1 < src_.size() && src_[q + 1] == close)
          mod = src_[q++];
        if (src_[q] == close && q + 1 < src_.size() && src_[q + 1] == '}') {
          tokens_.push_back(Token{is_var ? TokenType::VarEnd : TokenType::BlockEnd, "", 0, 0, line, col});
          q += 2;
          if (is_var) {
            strip_next = mod == '-';
            return q;
          }
          return after_block_end(q, mod, strip_next);
        }
      }
      char c = src_[p];
      if (is_name_start(c)) {
        size_t b = p;
        while (p < src_.size() && is_name_char(src_[p])) ++p;
        tokens_.push_back(Token{TokenType::Name, src_.substr(b, p - b), 0, 0, line, col});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        p = lex_number(p, after_dot, line, col);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p, line, col);
      } else {
        static const char* two[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op(1, c);
        for (const char* t : two)
          if (src_.compare(p, 2, t) == 0) op = t;
        if (op.size() == 1 && std::string("+-*/%~<>=()[]{},.:|;").find(c) == std::string::npos)
          template_error(line, col, "unexpected character '", op, "'");
        if (c == '(' || c == '[' || c == '{') ++depth;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        p += op.size();
        tokens_.push_back(Token{TokenType::Operator, op, 0, 0, line, col});
      }
      after_dot = tokens_.back().type == TokenType::Operator && tokens_.back().text == ".";
    }
  }

  size_t lex_number(size_t p, bool integer_only, int line, int col) {
    auto digits = [&](size_t q) {
      while (q < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[q])) ||
              (src_[q] == '_' && q + 1 < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q + 1])))))
        ++q;
      return q;
    };
    size_t b = p;
    p = digits(p);
    bool is_float = false;
    if (!integer_only && p + 1 < src_.size() && src_[p] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
      p = digits(p + 1);
      is_float = true;
    }
    if (!integer_only && p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        p = digits(q);
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = b; i < p; ++i)
      if (src_[i] != '_') text += src_[i];
    Token t{is_float ? TokenType::Float : TokenType::Integer, text, 0, 0, line, col};
    if (is_float) {
      t.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      errno = 0;
      t.int_value = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) template_error(line, col, "integer literal too large: ", text);
    }
    tokens_.push_back(t);
    return p;
  }

  size_t lex_string(size_t p, int line, int col) {
    char quote = src_[p++];
    std::string out;
    auto hex = [&](size_t n) -> char32_t {
      if (p + n > src_.size()) template_error(line, col, "truncated escape in string literal");
      char32_t v = 0;
      for (size_t i = 0; i < n; ++i) {
        char h = src_[p + i];
        if (!std::isxdigit(static_cast<unsigned char>(h))) template_error(line, col, "bad escape in string literal");
        v = v * 16 +
            static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      p += n;
      return v;
    };
    while (true) {
      if (p >= src_.size()) template_error(line, col, "unterminated string literal");
      char c = src_[p++];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p >= src_.size()) template_error(line, col, "unterminated string literal");
      char e = src_[p++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;
        case 'x': utf8_append(out, hex(2)); break;
        case 'u': utf8_append(out, hex(4)); break;
        case 'U': utf8_append(out, hex(8)); break;
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = static_cast<char32_t>(e - '0');
            for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i)
              v = v * 8 + static_cast<char32_t>(src_[p++] - '0');
            utf8_append(out, v);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    tokens_.push_back(Token{TokenType::String, out, 0, 0, line, col});
    return p;
  }

  std::string src_;
  LexerOptions opt_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source, const LexerOptions& options) {
  return Lexer(source, options).run();
}

}  // namespace vlm::jinja
