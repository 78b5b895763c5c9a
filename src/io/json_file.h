// Reading JSON files with errors that name the file, and typed field access that names the field.
#pragma once
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>

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

namespace json_detail {
// v as T. nlohmann converts any number to any arithmetic type with a plain cast, which is undefined for
// out-of-range floats (2.5e55 -> int) and silently wraps integers; integral fields take only integral
// values that fit.
template <typename T>
T get_checked(const json& v, const std::string& key, const std::string& where) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (v.is_number()) {
      bool fits;
      if (v.is_number_unsigned())
        fits = v.get<uint64_t>() <= uint64_t(std::numeric_limits<T>::max());
      else if (v.is_number_integer())
        fits = v.get<int64_t>() >= int64_t(std::numeric_limits<T>::min()) &&
               (v.get<int64_t>() < 0 || uint64_t(v.get<int64_t>()) <= uint64_t(std::numeric_limits<T>::max()));
      else {
        double d = v.get<double>();
        // max + 1 is a power of two, exact as a double (max itself may round up to it).
        fits = std::isfinite(d) && d == std::floor(d) && d >= double(std::numeric_limits<T>::min()) &&
               d < double(std::numeric_limits<T>::max()) + 1.0;
      }
      if (!fits) fail(where, ": field '", key, "' is not an integer in range (", v.dump(), ")");
    }
  }
  return v.template get<T>();
}
}  // namespace json_detail

// cfg[key] as T, or `fallback` when absent/null; throws "<where>: field 'key' ..." on a wrong type.
template <typename T>
T json_get(const json& cfg, const std::string& key, const T& fallback, const std::string& where) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return fallback;
  try {
    return json_detail::get_checked<T>(*it, key, where);
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
    return json_detail::get_checked<T>(*it, key, where);
  } catch (const json::exception&) {
    fail(where, ": field '", key, "' has the wrong type (", it->type_name(), ")");
  }
}

}  // namespace vlm
