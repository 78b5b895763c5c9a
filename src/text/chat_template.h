// Renders Hugging Face chat templates (Jinja2 as transformers configures it: trim_blocks and
// lstrip_blocks on, `raise_exception` and `strftime_now` available).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace vlm {

// Renders `source` with the given variables (messages, add_generation_prompt, bos_token,
// eos_token, tools, add_vision_id, ...). Throws vlm::Error with line:column on template syntax
// errors or on raise_exception().
std::string render_chat_template(const std::string& source, const nlohmann::json& context);

// General Jinja2 rendering with explicit options (used by tests against Python's jinja2).
struct JinjaOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};
std::string render_jinja(const std::string& source, const nlohmann::json& context, const JinjaOptions& options);

// Same with an insertion-ordered context. nlohmann::json sorts object keys, so with the overloads
// above dict iteration and `tojson` see keys alphabetically; Python keeps insertion order. Parse
// contexts as ordered_json where key order matters (e.g. tool schemas printed with tojson).
std::string render_chat_template(const std::string& source, const nlohmann::ordered_json& context);
std::string render_jinja(const std::string& source, const nlohmann::ordered_json& context, const JinjaOptions& options);

}  // namespace vlm
