// MatMulWeight::forward at Qwen2-VL-2B shapes (hidden 1536, intermediate 8960, vocab 151936).
// Counters: GB/s = weight bytes streamed per second, GFLOP/s = 2·M·N·K per second (int8: integer
// multiply-adds counted the same way). Wall-clock time (UseRealTime), so with the default pool
// (VLM_THREADS unset: one thread per core) the figures are multi-threaded; VLM_THREADS=1 gives
// per-core figures. Run on an idle machine: the counters are rates of wall time.
// Precision argument: 0 = f32 (default), 1 = bf16 dot products (GEMM; GEMV for bf16 weights),
// 2 = int8 (VNNI) on the checkpoint layout, 3 = int8 on weights repacked by prepare() (fast mode).
// The 8960-row and 8960-column single matmuls (7 MB at 4 bits) stay largely in L3 across
// iterations: their GB/s overstate DRAM streaming; the lm_head shape and BM_DecodeStep do not.
// BM_ReadBandwidth is the roof: a 1.5 GiB buffer summed with 512-bit loads on 1 and 2 threads.
// BM_ComputePeak is the compute roof: f32 FMA, bf16 and int8 dot products from registers.
// BM_DecodeStep streams a whole Qwen2-VL-2B decode step's weights (28 layers of q/k/v/o/gate/up/
// down plus lm_head, all distinct) once per iteration: tokens/s of the matmuls alone.
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "bench_util.h"
#include "core/compute.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "kernels/roof.h"

namespace {

using vlm::DType;

using vlm::bench::process_cpu_seconds;

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

vlm::Compute& bench_env() {
  static vlm::Compute env = vlm::Compute::make();  // VLM_THREADS or one thread per core
  return env;
}

// Random bits fast enough for gigabytes of weights (the decode-step set).
void fill_random_words(uint32_t* p, int64_t n, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < n; ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    p[i] = uint32_t(s);
  }
}

MatMulWeight make_weight(int format, int64_t N, int64_t K, uint32_t seed, bool repack) {
  if (format == kBF16) {
    Tensor t = Tensor::empty(DType::BF16, {N, K});
    fill_random_words(reinterpret_cast<uint32_t*>(t.raw()), N * K / 2, seed);
    // Keep sign and mantissa, pin the exponent to [2^-8, 2^-5): finite values of weight-like size.
    uint16_t* h = t.data<uint16_t>();
    for (int64_t i = 0; i < N * K; ++i) h[i] = uint16_t((h[i] & 0x81FFu) | 0x3C00u);
    MatMulWeight w = MatMulWeight::dense(t, "bench");
    if (repack) w.prepare(vlm::Compute{bench_env().pool, vlm::Precision::kFast, nullptr, {}});
    return w;
  }
  const int bits = format, group = 64;
  Tensor packed = Tensor::empty(DType::U32, {N, K * bits / 32});
  fill_random_words(packed.data<uint32_t>(), packed.numel(), seed);
  Tensor s = random_tensor(DType::BF16, {N, K / group}, -0.01f, 0.01f, 3);
  Tensor b = random_tensor(DType::BF16, {N, K / group}, -0.1f, 0.1f, 4);
  MatMulWeight w = MatMulWeight::quantized(packed, s, b, bits, group, "bench");
  if (repack) w.prepare(vlm::Compute{bench_env().pool, vlm::Precision::kFast, nullptr, {}});
  return w;
}

const MatMulWeight& weight(int format, int64_t N, int64_t K, bool repack = false) {
  static std::map<std::tuple<int, int64_t, int64_t, bool>, MatMulWeight> cache;
  auto key = std::make_tuple(format, N, K, repack);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  return cache.emplace(key, make_weight(format, N, K, 2, repack)).first->second;
}

static const vlm::MatMulPrecision kPrec[] = {vlm::MatMulPrecision::kF32, vlm::MatMulPrecision::kBF16,
                                             vlm::MatMulPrecision::kInt8, vlm::MatMulPrecision::kF32};
static const char* kPrecName[] = {"", " bf16-dot", " int8", " f32 prepared"};
const char* format_name(int format) {
  return format == kBF16 ? "bf16" : format == kQ4 ? "q4g64" : "q8g64";
}

// Args: format, M, N, K, precision: 0 = f32 on the checkpoint layout (exact mode); 1 = bf16 dot
// products, 2 = int8, 3 = f32 products, each on the weights prepare() repacked for fast mode (the
// dense bf16 panels or the int8 panels; 3 is fast mode for dense bf16 weights without AVX512-BF16).
void BM_MatMul(benchmark::State& state) {
  const int format = int(state.range(0));
  const int64_t M = state.range(1), N = state.range(2), K = state.range(3);
  const int prec = int(state.range(4));
  if ((prec == 1 && !vlm::matmul_bf16_supported()) || (prec >= 2 && !vlm::matmul_int8_supported())) {
    state.SkipWithError("CPU lacks AVX512_BF16 / AVX512_VNNI");
    return;
  }
  const MatMulWeight& w = weight(format, N, K, prec != 0);
  std::vector<float> x(size_t(M * K), 0.5f), y(size_t(M * N));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& v : x) v = u(rng);
  vlm::Compute& env = bench_env();
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
  state.SetLabel(std::string(format_name(format)) + kPrecName[prec]);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int f : {kBF16, kQ4, kQ8}) {
    // int8 only differs from f32 for quantized weights; bf16 dot GEMV only for bf16 weights.
    const std::vector<int> precs = f == kBF16 ? std::vector<int>{0, 1, 3} : std::vector<int>{0, 2};
    for (int p : precs) {
      b->Args({f, 1, 256, 1536, p});  // L2-resident: compute-bound speed
      for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{{8960, 1536}, {1536, 8960}, {151936, 1536}})
        b->Args({f, 1, N, K, p});
    }
    for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{{8960, 1536}, {1536, 8960}})
      for (int p : f == kBF16 ? std::vector<int>{0, 1, 3} : std::vector<int>{0, 1, 2}) b->Args({f, 512, N, K, p});
  }
}
// Prefill GEMMs with dense bf16 weights: Qwen2-VL vision tower (1024 patches, E=1280, MLP 5120:
// qkv, fc1, fc2) and 512 prompt tokens of the 1.5B LM (hidden 1536, MLP 8960: up, down).
void DenseGemmShapes(benchmark::internal::Benchmark* b) {
  for (auto [M, N, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1024, 3840, 1280}, {1024, 5120, 1280}, {1024, 1280, 5120}, {512, 8960, 1536}, {512, 1536, 8960}})
    for (int p : {0, 1, 3}) b->Args({kBF16, M, N, K, p});
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

// Sum of a 1.5 GiB buffer with 512-bit loads, split contiguously over `threads` threads: the
// read-bandwidth roof the GEMV figures compare to (kernels/roof.h).
void BM_ReadBandwidth(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512f")) return state.SkipWithError("no AVX-512");
  const int threads = int(state.range(0));
  constexpr int64_t kBytes = int64_t(3) << 29;
  static Tensor buf = [] {
    Tensor t = Tensor::empty(DType::U8, {kBytes});
    std::memset(t.raw(), 0, size_t(kBytes));
    return t;
  }();
  vlm::ThreadPool pool(threads);
  for (auto _ : state) benchmark::DoNotOptimize(vlm::sum_floats_parallel(pool, buf.data<float>(), kBytes / 4));
  state.counters["GB/s"] = benchmark::Counter(double(kBytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);

// Compute roofs (kernels/roof.h): 16 independent register-resident chains per thread.
// Kinds: 0 = f32 FMA (2 FLOP per lane), 1 = vdpbf16ps (4 FLOP per f32 lane: two bf16 products),
// 2 = vpdpbusd (8 OP per i32 lane: four u8 x s8 products). GFLOP/s counts those operations.
// Args: kind (above), threads.
void BM_ComputePeak(benchmark::State& state) {
  const int kind = int(state.range(0)), threads = int(state.range(1));
  static const char* kNames[] = {"f32 fma", "bf16 vdpbf16ps", "int8 vpdpbusd"};
  const vlm::RoofOp op = kind == 0 ? vlm::RoofOp::kF32Fma : kind == 1 ? vlm::RoofOp::kBf16Dot : vlm::RoofOp::kInt8Dot;
  if (!vlm::roof_op_supported(op)) return state.SkipWithError("CPU lacks the instruction");
  vlm::ThreadPool pool(threads);
  double ops = 0;
  for (auto _ : state) ops = vlm::run_roof_chains(pool, op, int64_t(1) << 22);
  state.counters["GFLOP/s"] = benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(kNames[kind]);
}
BENCHMARK(BM_ComputePeak)
    ->ArgsProduct({{0, 1, 2}, {1, 2}})
    ->ArgNames({"kind", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Args: format, precision (as BM_MatMul). One decode step of Qwen2-VL-2B's language model.
void BM_DecodeStep(benchmark::State& state) {
  const int format = int(state.range(0)), prec = int(state.range(1));
  if ((prec == 1 && !vlm::matmul_bf16_supported()) || (prec >= 2 && !vlm::matmul_int8_supported()))
    return state.SkipWithError("CPU lacks AVX512_BF16 / AVX512_VNNI");
  constexpr int kLayers = 28;
  const std::vector<std::pair<int64_t, int64_t>> layer = {{1536, 1536}, {256, 1536},  {256, 1536}, {1536, 1536},
                                                          {8960, 1536}, {8960, 1536}, {1536, 8960}};
  static std::map<std::pair<int, bool>, std::vector<MatMulWeight>> sets;
  // One weight set at a time: the bf16 one alone is 3.5 GB.
  const auto key = std::make_pair(format, prec == 2);
  if (!sets.count(key)) {
    sets.clear();
    std::vector<MatMulWeight> ws;
    uint32_t seed = 10;
    for (int l = 0; l < kLayers; ++l)
      for (auto [N, K] : layer) ws.push_back(make_weight(format, N, K, seed++, prec == 2));
    ws.push_back(make_weight(format, 151936, 1536, seed++, prec == 2));
    sets[key] = std::move(ws);
  }
  const std::vector<MatMulWeight>& ws = sets[key];
  std::vector<float> x(8960), y(151936);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& v : x) v = u(rng);
  vlm::Compute& env = bench_env();
  double bytes = 0;
  for (const auto& w : ws) bytes += double(w.weight_bytes());
  for (auto _ : state) {
    for (const auto& w : ws) w.forward_as(kPrec[prec], env.threads(), x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["tok/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(format_name(format)) + kPrecName[prec]);
}
BENCHMARK(BM_DecodeStep)
    ->Args({kQ4, 2})
    ->Args({kQ8, 2})
    ->Args({kBF16, 0})
    ->Args({kBF16, 1})
    ->ArgNames({"fmt", "prec"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
