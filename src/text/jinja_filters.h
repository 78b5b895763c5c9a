// jinja2's built-in filters and tests, plus transformers' tojson override
// (json.dumps(ensure_ascii=False): no HTML escaping, key order kept).
#pragma once
#include <string>

#include "text/jinja_value.h"

namespace vlm::jinja {

// Throws vlm::Error for unknown filters/tests or bad arguments.
Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
bool apply_test(const std::string& name, const Value& input, CallArgs& args);

}  // namespace vlm::jinja
