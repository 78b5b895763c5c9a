#include "core/compute.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace vlm {

Precision parse_precision(const std::string& name) {
  if (name == "exact") return Precision::kExact;
  if (name == "fast") return Precision::kFast;
  fail("precision '", name, "' is not one of: exact, fast");
}

const char* precision_name(Precision p) {
  return p == Precision::kExact ? "exact" : "fast";
}

Compute Compute::make(int threads, Precision precision) {
  if (threads <= 0) {
    threads = physical_core_count();
    if (const char* env = std::getenv("VLM_THREADS"); env && *env) threads = std::max(1, std::atoi(env));
  }
  Compute c;
  c.pool = std::make_shared<ThreadPool>(threads);
  c.precision = precision;
  c.counters = std::make_shared<ComputeCounters>();
  return c;
}

Compute Compute::serial() {
  return make(1, Precision::kExact);
}

Precision precision_from_env(Precision fallback) {
  const char* env = std::getenv("VLM_PRECISION");
  if (!env || !*env) return fallback;
  return parse_precision(env);
}

}  // namespace vlm
