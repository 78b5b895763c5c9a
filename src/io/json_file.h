// Reading JSON files with errors that name the file, and typed field access that names the field.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.h"

namespace vlm {

using json = nlohmann::json;

// Reads a model-directory file. A symlink copied without link support becomes a tiny file
// holding the link target (e.g. "../../assets/x/tokenizer.json"); such a file is followed.
std::string read_model_file(const std::string& path);

// User-supplied JSON nests no deeper than this: deeper documents are refused while parsing, before a
// flood of nested containers eats memory or a recursive consumer (dump, templates) the stack.
inline constexpr int kMaxJsonDepth = 128;

// json::parse(text) that additionally refuses nesting deeper than `max_depth` containers. Throws
// json::exception on syntax errors (as json::parse does) and vlm::Error "<where>: JSON nested deeper
// than N levels" on depth.
json parse_json_limited(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth);

// Parses `path` (following link-target files as above); throws vlm::Error "<path>: ..." when
// missing or malformed.
json read_json_file(const std::string& path);

// cfg[key] as T, or `fallback` when absent/null; throws "<where>: field 'key' ..." on a wrong type.
template <typename T>
T json_get(const json& cfg, const std::string& key, const T& fallback, const std::string& where) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return fallback;
  try {
    return it->template get<T>();
  } catch (const json::exception&) {
    fail(where, ": field '", key, "' has the wrong type (", it->type_name(), ")");
  }
}

// cfg[key] as T; throws when absent or mistyped.
template <typename T>
T json_require(const json& cfg, const std::string& key, const std::string& where) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) fail(where, ": missing required field '", key, "'");
  try {
    return it->template get<T>();
  } catch (const json::exception&) {
    fail(where, ": field '", key, "' has the wrong type (", it->type_name(), ")");
  }
}

}  // namespace vlm
