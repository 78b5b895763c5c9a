// The compute environment every kernel receives: the threads that run it and how precisely it
// multiplies. It is passed down explicitly (there is no process-wide pool or precision), so two
// models in one process can run with different settings.
#pragma once
#include <memory>
#include <string>

#include "core/thread_pool.h"

namespace vlm {

enum class Precision {
  kExact,  // float32 products and accumulation everywhere: the oracle-fixture path
  kFast,   // bf16 or int8 activations in matmuls, float32 accumulation, float32 norms and softmax
};

// "exact" | "fast" (as in --precision and VLM_PRECISION); throws vlm::Error otherwise.
Precision parse_precision(const std::string& name);
const char* precision_name(Precision p);

struct Compute {
  std::shared_ptr<ThreadPool> pool;  // never null in an environment from make()
  Precision precision = Precision::kExact;

  ThreadPool& threads() const { return *pool; }
  int num_threads() const { return pool->size(); }

  // threads <= 0: VLM_THREADS, else the number of physical cores.
  static Compute make(int threads = 0, Precision precision = Precision::kExact);
  // One thread, exact: for tests and for work that must not compete with a running model.
  static Compute serial();
};

// VLM_PRECISION when set (exact | fast), else `fallback`.
Precision precision_from_env(Precision fallback);

}  // namespace vlm
