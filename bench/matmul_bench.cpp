// MatMulWeight::forward at Qwen2-VL-2B shapes (hidden 1536, intermediate 8960, vocab 151936).
// Counters: GB/s = weight bytes streamed per second, GFLOP/s = 2·M·N·K per second (int8: integer
// multiply-adds counted the same way). Wall-clock time (UseRealTime), so with the default pool
// (VLM_THREADS unset: one thread per core) the figures are multi-threaded; VLM_THREADS=1 gives
// per-core figures. Run on an idle machine: the counters are rates of wall time.
// Precision argument: 0 = f32 (default), 1 = bf16 dot products (GEMM), 2 = int8 (VNNI).
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/compute.h"
#include "kernels/matmul.h"

namespace {

using vlm::DType;

double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}
using vlm::MatMulWeight;
using vlm::Tensor;

enum Format { kBF16 = 0, kQ4 = 4, kQ8 = 8 };

Tensor random_tensor(DType dt, vlm::Shape shape, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor t = Tensor::empty(DType::F32, shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t.to(dt);
}

const MatMulWeight& weight(int format, int64_t N, int64_t K) {
  static std::map<std::tuple<int, int64_t, int64_t>, MatMulWeight> cache;
  auto key = std::make_tuple(format, N, K);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  MatMulWeight w;
  if (format == kBF16) {
    w = MatMulWeight::dense(random_tensor(DType::BF16, {N, K}, -0.05f, 0.05f, 1), "bench");
  } else {
    const int bits = format, group = 64;
    Tensor packed = Tensor::empty(DType::U32, {N, K * bits / 32});
    std::mt19937 rng(2);
    uint32_t* p = packed.data<uint32_t>();
    for (int64_t i = 0; i < packed.numel(); ++i) p[i] = rng();
    Tensor s = random_tensor(DType::BF16, {N, K / group}, -0.01f, 0.01f, 3);
    Tensor b = random_tensor(DType::BF16, {N, K / group}, -0.1f, 0.1f, 4);
    w = MatMulWeight::quantized(packed, s, b, bits, group, "bench");
  }
  return cache.emplace(key, std::move(w)).first->second;
}

// Args: format, M, N, K, precision (0 = f32, 1 = bf16, 2 = int8).
void BM_MatMul(benchmark::State& state) {
  const int format = int(state.range(0));
  const int64_t M = state.range(1), N = state.range(2), K = state.range(3);
  const int prec = int(state.range(4));
  if ((prec == 1 && !vlm::matmul_bf16_supported()) || (prec == 2 && !vlm::matmul_int8_supported())) {
    state.SkipWithError("CPU lacks AVX512_BF16 / AVX512_VNNI");
    return;
  }
  static const vlm::MatMulPrecision kPrec[] = {vlm::MatMulPrecision::kF32, vlm::MatMulPrecision::kBF16,
                                               vlm::MatMulPrecision::kInt8};
  const MatMulWeight& w = weight(format, N, K);
  std::vector<float> x(size_t(M * K), 0.5f), y(size_t(M * N));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& v : x) v = u(rng);
  static vlm::Compute env = vlm::Compute::make();  // VLM_THREADS or one thread per core
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    w.forward_as(kPrec[prec], env.threads(), x.data(), M, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  // Rate per second of CPU time of the whole process: robust when other jobs share the cores
  // (divide by the thread count for per-core efficiency; idle pool workers' spinning counts too).
  state.counters["GFLOP/cpu_s"] = 2e-9 * double(M) * double(N) * double(K) * double(state.iterations()) /
                                  std::max(1e-9, process_cpu_seconds() - cpu0);
  state.counters["GB/s"] =
      benchmark::Counter(double(w.weight_bytes()) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * double(M) * double(N) * double(K), benchmark::Counter::kIsIterationInvariantRate);
  static const char* kPrecName[] = {"", " bf16-dot", " int8"};
  state.SetLabel(std::string(format == kBF16 ? "bf16" : format == kQ4 ? "q4g64" : "q8g64") + kPrecName[prec]);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int f : {kBF16, kQ4, kQ8}) {
    // int8 only differs from f32 for quantized weights.
    const std::vector<int> precs = f == kBF16 ? std::vector<int>{0} : std::vector<int>{0, 2};
    for (int p : precs) {
      b->Args({f, 1, 256, 1536, p});  // L2-resident: compute-bound speed
      for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{{8960, 1536}, {1536, 8960}, {151936, 1536}})
        b->Args({f, 1, N, K, p});
    }
    for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{{8960, 1536}, {1536, 8960}})
      for (int p : {0, 1, 2})
        if (p != 2 || f != kBF16) b->Args({f, 512, N, K, p});
  }
}
// Prefill GEMMs with dense bf16 weights: Qwen2-VL vision tower (1024 patches, E=1280, MLP 5120:
// qkv, fc1, fc2) and 512 prompt tokens of the 1.5B LM (hidden 1536, MLP 8960: up, down).
void DenseGemmShapes(benchmark::internal::Benchmark* b) {
  for (auto [M, N, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1024, 3840, 1280}, {1024, 5120, 1280}, {1024, 1280, 5120}, {512, 8960, 1536}, {512, 1536, 8960}})
    for (int p : {0, 1}) b->Args({kBF16, M, N, K, p});
}
BENCHMARK(BM_MatMul)
    ->Name("BM_DenseGemm")
    ->Apply(DenseGemmShapes)
    ->ArgNames({"fmt", "M", "N", "K", "prec"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// A decode step's worth of tiny matmuls: fork-join overhead dominates here.
void TinyShapes(benchmark::internal::Benchmark* b) {
  for (int f : {kBF16, kQ4}) b->Args({f, 1, 128, 256, 0});
}
BENCHMARK(BM_MatMul)
    ->Apply(Shapes)
    ->Apply(TinyShapes)
    ->ArgNames({"fmt", "M", "N", "K", "prec"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
