// Errors carry line and column; pathological templates fail cleanly instead of crashing.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "text/chat_template.h"

namespace {

std::string error_of(const std::string& src, const nlohmann::json& ctx = nlohmann::json::object()) {
  try {
    vlm::render_chat_template(src, ctx);
  } catch (const vlm::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ChatErrors, SyntaxErrorsNameLineAndColumn) {
  EXPECT_NE(error_of("line1\n  {{ 1 + }}").find("line 2, column 10"), std::string::npos)
      << error_of("line1\n  {{ 1 + }}");
  EXPECT_NE(error_of("{% if x %}\nno end").find("'endif'"), std::string::npos) << error_of("{% if x %}\nno end");
  EXPECT_NE(error_of("ab\n{% frobnicate %}").find("line 2, column 4"), std::string::npos);
  EXPECT_NE(error_of("{{ 'unterminated }}").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("{{ x @ y }}").find("unexpected character"), std::string::npos);
  EXPECT_NE(error_of("{% include 'x' %}").find("unsupported tag 'include'"), std::string::npos);
}

TEST(ChatErrors, RuntimeErrorsNameTheirLocation) {
  std::string e = error_of("ok\n\n   {{ 1 + 'a' }}");
  EXPECT_NE(e.find("line 3, column 9"), std::string::npos) << e;
  EXPECT_NE(e.find("unsupported operand"), std::string::npos) << e;
  e = error_of("{{ x | nosuch }}", {{"x", 1}});
  EXPECT_NE(e.find("no filter named 'nosuch'"), std::string::npos) << e;
  e = error_of("{{ undefined_fn() }}");
  EXPECT_NE(e.find("'undefined_fn' is undefined"), std::string::npos) << e;
}

TEST(ChatErrors, RaiseExceptionCarriesTheMessage) {
  std::string e = error_of("{{ raise_exception('Roles must alternate') }}");
  EXPECT_NE(e.find("Roles must alternate"), std::string::npos) << e;
}

TEST(ChatErrors, PathologicalTemplatesFailCleanly) {
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("nesting"),
            std::string::npos);
  EXPECT_NE(error_of("{{ '{{' }}{{" + std::string(3000, '[')).find("chat template error"), std::string::npos);
  std::string deep_blocks;
  for (int i = 0; i < 1000; ++i) deep_blocks += "{% if true %}";
  EXPECT_NE(error_of(deep_blocks).find("nesting"), std::string::npos);
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("recursion"), std::string::npos);
  EXPECT_NE(error_of("{{ 'x' * 100000000000 }}").find("too large"), std::string::npos);
  EXPECT_NE(error_of("{{ range(10000000000) | length }}").find("too long"), std::string::npos);
  EXPECT_NE(
      error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").find("iterations"),
      std::string::npos);
  EXPECT_NE(error_of("{% set s = 'xxxxxxxxxxxxxxxx' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}")
                .find("output exceeds"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("overflow"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 // 0 }}").find("division by zero"), std::string::npos);
}

TEST(ChatErrors, StrftimeNowFormatsTheCurrentDate) {
  std::string year = vlm::render_chat_template("{{ strftime_now('%Y') }}", nlohmann::json::object());
  ASSERT_EQ(year.size(), 4u);
  EXPECT_GE(std::stoi(year), 2024);
}

TEST(ChatErrors, SortedJsonContextIsDocumentedKeyOrder) {
  // nlohmann::json sorts keys; ordered_json keeps them (Python order).
  auto sorted = nlohmann::json::parse(R"({"b": 1, "a": 2})");
  auto ordered = nlohmann::ordered_json::parse(R"({"b": 1, "a": 2})");
  const std::string t = "{% for k in d %}{{ k }}{% endfor %}";
  EXPECT_EQ(vlm::render_chat_template(t, nlohmann::json{{"d", sorted}}), "ab");
  EXPECT_EQ(vlm::render_chat_template(t, nlohmann::ordered_json{{"d", ordered}}), "ba");
}

}  // namespace
