#include "kernels/roof.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "kernels/matmul_x86.h"

namespace vlm {

namespace {

constexpr int kChains = 16;

#ifdef VLM_X86_KERNELS
__attribute__((target("avx512f"))) float fma_chains(int64_t iterations) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(float(c));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  for (int c = 1; c < kChains; ++c) acc[0] = _mm512_add_ps(acc[0], acc[c]);
  return _mm512_reduce_add_ps(acc[0]);
}

__attribute__((target("avx512f,avx512bf16"))) float dpbf16_chains(int64_t iterations) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(float(c));
  // bf16 1.0 and 0.001.
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3a83);
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  for (int c = 1; c < kChains; ++c) acc[0] = _mm512_add_ps(acc[0], acc[c]);
  return _mm512_reduce_add_ps(acc[0]);
}

__attribute__((target("avx512f,avx512vnni"))) float dpbusd_chains(int64_t iterations) {
  __m512i acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_epi32(c);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
  for (int c = 1; c < kChains; ++c) acc[0] = _mm512_add_epi32(acc[0], acc[c]);
  return float(_mm512_reduce_add_epi32(acc[0]));
}

__attribute__((target("avx512f"))) float sum_avx512(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; ++i) s += p[i];
  return s;
}
#endif

float sum_plain(const float* p, int64_t n) {
  float s[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += p[i + j];
  for (; i < n; ++i) s[0] += p[i];
  float total = 0;
  for (float v : s) total += v;
  return total;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

bool roof_op_supported(RoofOp op) {
#ifdef VLM_X86_KERNELS
  if (!__builtin_cpu_supports("avx512f")) return false;
  switch (op) {
    case RoofOp::kF32Fma: return true;
    case RoofOp::kBf16Dot: return __builtin_cpu_supports("avx512bf16");
    case RoofOp::kInt8Dot: return __builtin_cpu_supports("avx512vnni");
  }
#endif
  (void)op;
  return false;
}

double run_roof_chains(ThreadPool& pool, RoofOp op, int64_t iterations) {
  if (!roof_op_supported(op) || iterations <= 0) return 0;
#ifdef VLM_X86_KERNELS
  std::vector<float> sink(static_cast<size_t>(pool.size()));
  pool.run(pool.size(), [&](int64_t t) {
    sink[size_t(t)] = op == RoofOp::kF32Fma    ? fma_chains(iterations)
                      : op == RoofOp::kBf16Dot ? dpbf16_chains(iterations)
                                               : dpbusd_chains(iterations);
  });
  volatile float keep = sink[0];  // the results are used: the chains cannot be dropped
  (void)keep;
  const double per_instruction = op == RoofOp::kF32Fma ? 32 : op == RoofOp::kBf16Dot ? 64 : 128;
  return double(pool.size()) * double(iterations) * kChains * per_instruction;
#else
  return 0;
#endif
}

double sum_floats_parallel(ThreadPool& pool, const float* p, int64_t n) {
  const int64_t threads = pool.size(), per = n / threads;
  std::vector<double> sums(static_cast<size_t>(threads));
  pool.run(threads, [&](int64_t t) {
    const int64_t begin = t * per, count = t == threads - 1 ? n - begin : per;
#ifdef VLM_X86_KERNELS
    if (__builtin_cpu_supports("avx512f")) {
      sums[size_t(t)] = sum_avx512(p + begin, count);
      return;
    }
#endif
    sums[size_t(t)] = sum_plain(p + begin, count);
  });
  double total = 0;
  for (double s : sums) total += s;
  return total;
}

MachineRoof measure_machine_roof(ThreadPool& pool) {
  MachineRoof roof;
  roof.threads = pool.size();
  auto best_rate = [&](RoofOp op) {
    double best = 0;
    for (int run = 0; run < 3; ++run) {
      const auto t0 = std::chrono::steady_clock::now();
      const double ops = run_roof_chains(pool, op, int64_t(1) << 21);  // ~10-30 ms
      best = std::max(best, ops / std::max(seconds_since(t0), 1e-9));
    }
    return best * 1e-9;
  };
  roof.f32_gflops = best_rate(RoofOp::kF32Fma);
  roof.bf16_gflops = best_rate(RoofOp::kBf16Dot);
  roof.int8_gops = best_rate(RoofOp::kInt8Dot);
  constexpr int64_t kFloats = int64_t(128) << 20;  // 512 MiB: far beyond any last-level cache
  std::unique_ptr<float[]> buf(new float[size_t(kFloats)]);
  pool.run(pool.size(), [&](int64_t t) {  // touched by the threads that read it (first-touch NUMA)
    const int64_t per = kFloats / pool.size(), begin = t * per;
    std::fill(buf.get() + begin, buf.get() + (t == pool.size() - 1 ? kFloats : begin + per), 1.f);
  });
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile double keep = sum_floats_parallel(pool, buf.get(), kFloats);
    (void)keep;
    best = std::max(best, double(kFloats) * sizeof(float) / std::max(seconds_since(t0), 1e-9));
  }
  roof.read_gbs = best * 1e-9;
  return roof;
}

}  // namespace vlm
