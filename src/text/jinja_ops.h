// Python operator and object semantics as jinja2 applies them: arithmetic, `in`, attribute and item
// lookup (jinja2's getattr/getitem fallbacks), slicing, iteration, and str/dict methods.
#pragma once
#include <string>

#include "text/jinja_value.h"

namespace vlm::jinja {

// Caps that keep pathological templates from exhausting memory.
inline constexpr size_t kMaxSequenceLength = size_t{1} << 24;  // list items or string bytes built by one op

Value binary_op(const std::string& op, const Value& a, const Value& b);
Value negate(const Value& v);
bool contains(const Value& container, const Value& item);  // Python `item in container`

// Jinja's `obj.name`: Python attribute (methods) first, then item; Undefined when neither exists.
Value get_attr(const Value& obj, const std::string& name);
// Jinja's `obj[key]`: item first, then attribute for string keys; Undefined when neither exists.
Value get_item(const Value& obj, const Value& key);
Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step);

// What a for loop iterates: list items, dict keys, string characters; Undefined is empty.
List iterate(const Value& v, const char* what);

// Python %-formatting for `"..." % args` and the `format` filter.
std::string percent_format(const std::string& fmt, const Value& args);
// Python str.format with positional and keyword fields (no format specs beyond plain {}).
std::string brace_format(const std::string& fmt, const CallArgs& args);

int64_t to_index(const Value& v, const char* what);

}  // namespace vlm::jinja
