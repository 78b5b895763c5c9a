// The compute environment every kernel receives: the threads that run it and how precisely it
// multiplies. It is passed down explicitly (there is no process-wide pool or precision), so two
// models in one process can run with different settings.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
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

// The work done in an environment, for achieved GFLOP/s and GB/s (`vlm bench`): the FLOPs of
// matmuls and attention (2 per multiply-add) and the bytes of weights the matmuls read (one pass
// over W per call, however many rows). Shared by the copies of an environment.
struct ComputeCounters {
  std::atomic<int64_t> flops{0};
  std::atomic<int64_t> weight_bytes{0};
  struct Snapshot {
    int64_t flops = 0, weight_bytes = 0;
  };
  Snapshot snapshot() const {
    return {flops.load(std::memory_order_relaxed), weight_bytes.load(std::memory_order_relaxed)};
  }
};

struct Compute {
  std::shared_ptr<ThreadPool> pool;  // never null in an environment from make()
  Precision precision = Precision::kExact;
  std::shared_ptr<ComputeCounters> counters;  // null: not counted
  // Called by long multi-stage work between its stages (the vision tower between blocks), on the
  // calling thread with no pool work in flight: a batching server lets other requests use the
  // engine there, so an image encode does not stall their decoding. Empty: nothing happens.
  std::function<void()> between_stages;

  // Adds to the counters (when there are any).
  void count(int64_t flops, int64_t weight_bytes = 0) const {
    if (!counters) return;
    counters->flops.fetch_add(flops, std::memory_order_relaxed);
    if (weight_bytes) counters->weight_bytes.fetch_add(weight_bytes, std::memory_order_relaxed);
  }
  ComputeCounters::Snapshot snapshot() const { return counters ? counters->snapshot() : ComputeCounters::Snapshot{}; }

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
