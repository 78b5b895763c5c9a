// Renders a parsed Jinja template with jinja2's scoping (for/macro bodies are scopes, `if` is
// not; namespace() objects carry state out of loops) and resource caps.
#pragma once
#include <cstdint>
#include <string>

#include "text/jinja_parser.h"
#include "text/jinja_value.h"

namespace vlm::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{64} << 20;
  int max_call_depth = 200;                  // nested macro / caller invocations
  uint64_t max_loop_iterations = 2'000'000;  // summed over all loops of one render
};

// `context` must be a dict; its entries shadow the built-in globals (range, namespace, dict,
// raise_exception, strftime_now, cycler, joiner).
std::string render_template(const Template& tpl, const Value& context, const RenderLimits& limits = {});

}  // namespace vlm::jinja
