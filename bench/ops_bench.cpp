// ops.h kernels at Qwen2-VL-2B shapes (12 query heads, 2 kv heads, head_dim 128, hidden 1536,
// intermediate 8960). Times are CPU time of the calling thread: exact with VLM_THREADS=1.
#include <benchmark/benchmark.h>
#include <time.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "kernels/ops.h"

namespace {
// VLM_THREADS or one thread per core; VLM_PRECISION picks exact (default) or fast kernels.
const vlm::Compute& env() {
  static vlm::Compute c = vlm::Compute::make(0, vlm::precision_from_env(vlm::Precision::kExact));
  return c;
}
}  // namespace

namespace {

std::vector<float> rand_vec(size_t n) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

using vlm::bench::process_cpu_seconds;

// Args: T (queries), S (keys), precision (0 exact, 1 fast), shape (0: LM, 12 query / 2 kv heads
// of 128, causal with queries at the end of the key range; 1: Qwen2-VL vision tower, 16 heads of
// 80, one block-diagonal segment). GFLOP counts the visible (query, key) pairs, 4·head_dim each;
// GFLOP/cpu_s divides by the CPU time of the whole process (robust when the cores are shared).
void BM_Attention(benchmark::State& state) {
  const int64_t T = state.range(0), S = state.range(1);
  const bool vision = state.range(3) == 1;
  const int qh = vision ? 16 : 12, kvh = vision ? 16 : 2, hd = vision ? 80 : 128;
  auto q = rand_vec(size_t(T * qh * hd)), k = rand_vec(size_t(S * kvh * hd)), v = rand_vec(size_t(S * kvh * hd));
  std::vector<float> out(q.size());
  vlm::AttentionMask mask;
  mask.q_offset = S - T;
  if (vision) {
    mask.causal = false;
    mask.segments = {0, S};
  }
  const vlm::Compute& base = env();
  vlm::Compute c = base;
  c.precision = state.range(2) ? vlm::Precision::kFast : vlm::Precision::kExact;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    vlm::attention(c, q.data(), qh * hd, k.data(), v.data(), kvh * hd, T, S, qh, kvh, hd, 1.f / std::sqrt(float(hd)),
                   mask, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  double pairs = 0;  // visible (query, key) pairs
  for (int64_t i = 0; i < T; ++i) pairs += vision ? double(S) : double(S - T + i + 1);
  const double gflop = 4e-9 * pairs * qh * hd;
  state.counters["GFLOP/s"] = benchmark::Counter(gflop, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/cpu_s"] = gflop * double(state.iterations()) / (process_cpu_seconds() - cpu0);
  state.SetLabel(std::string(vision ? "vision" : "lm") + (state.range(2) ? " fast" : " exact"));
}
BENCHMARK(BM_Attention)
    ->ArgNames({"T", "S", "fast", "vision"})
    ->Args({1, 2048, 0, 0})
    ->Args({1, 32768, 0, 0})
    ->Args({512, 512, 0, 0})
    ->Args({512, 512, 1, 0})
    ->Args({1024, 1024, 0, 1})
    ->Args({1024, 1024, 1, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_RmsNorm(benchmark::State& state) {
  const int64_t rows = state.range(0), dim = 1536;
  auto x = rand_vec(size_t(rows * dim)), w = rand_vec(size_t(dim));
  std::vector<float> out(x.size());
  for (auto _ : state) vlm::rms_norm(env(), x.data(), w.data(), rows, dim, 1e-6f, out.data());
  state.SetBytesProcessed(int64_t(state.iterations()) * rows * dim * 8);
}
BENCHMARK(BM_RmsNorm)->Arg(1)->Arg(512);

void BM_LayerNorm(benchmark::State& state) {
  const int64_t rows = state.range(0), dim = 1280;
  auto x = rand_vec(size_t(rows * dim)), w = rand_vec(size_t(dim)), b = rand_vec(size_t(dim));
  std::vector<float> out(x.size());
  for (auto _ : state) vlm::layer_norm(env(), x.data(), w.data(), b.data(), rows, dim, 1e-6f, out.data());
  state.SetBytesProcessed(int64_t(state.iterations()) * rows * dim * 8);
}
BENCHMARK(BM_LayerNorm)->Arg(1024);

template <void (*F)(const vlm::Compute&, float*, int64_t)>
void BM_Activation(benchmark::State& state) {
  auto x = rand_vec(size_t(state.range(0))), x0 = x;
  for (auto _ : state) {
    F(env(), x.data(), state.range(0));
    state.PauseTiming();
    x = x0;  // keep inputs in range
    state.ResumeTiming();
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Activation<vlm::gelu_erf>)->Arg(512 * 5120);
BENCHMARK(BM_Activation<vlm::gelu_tanh>)->Arg(512 * 5120);
BENCHMARK(BM_Activation<vlm::silu>)->Arg(512 * 8960);

void BM_SiluMul(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto g = rand_vec(size_t(n)), up = rand_vec(size_t(n)), g0 = g;
  for (auto _ : state) {
    vlm::silu_mul(env(), g.data(), up.data(), n);
    state.PauseTiming();
    g = g0;
    state.ResumeTiming();
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * n);
}
BENCHMARK(BM_SiluMul)->Arg(8960)->Arg(512 * 8960);

void BM_Softmax(benchmark::State& state) {
  const int64_t rows = 64, cols = state.range(0);
  auto x = rand_vec(size_t(rows * cols)), x0 = x;
  for (auto _ : state) {
    vlm::softmax_rows(env(), x.data(), rows, cols);
    state.PauseTiming();
    x = x0;
    state.ResumeTiming();
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * rows * cols);
}
BENCHMARK(BM_Softmax)->Arg(151936 / 64);

}  // namespace

BENCHMARK_MAIN();
