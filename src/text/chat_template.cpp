#include "text/chat_template.h"

#include "text/jinja_eval.h"
#include "text/jinja_parser.h"

namespace vlm {
namespace {

template <typename Json>
std::string render(const std::string& source, const Json& context, const JinjaOptions& options) {
  jinja::LexerOptions lex{options.trim_blocks, options.lstrip_blocks, options.keep_trailing_newline};
  auto tpl = jinja::parse_template(source, lex);
  jinja::Value ctx = context.is_object() ? jinja::from_json(context) : jinja::Value::new_dict();
  return jinja::render_template(*tpl, ctx);
}

}  // namespace

std::string render_jinja(const std::string& source, const nlohmann::json& context, const JinjaOptions& options) {
  return render(source, context, options);
}

std::string render_jinja(const std::string& source, const nlohmann::ordered_json& context,
                         const JinjaOptions& options) {
  return render(source, context, options);
}

std::string render_chat_template(const std::string& source, const nlohmann::json& context) {
  return render(source, context, JinjaOptions{});
}

std::string render_chat_template(const std::string& source, const nlohmann::ordered_json& context) {
  return render(source, context, JinjaOptions{});
}

}  // namespace vlm
