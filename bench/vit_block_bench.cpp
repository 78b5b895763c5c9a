// One Qwen2-VL-2B vision block (E=1280, 16 heads of 80, MLP 5120, QuickGELU, LayerNorm, 2-D RoPE,
// block-diagonal attention) on N=1024 patches (a 448x448 image), built from kernels only, in exact
// and fast precision. Counters: ms per stage (process CPU time / threads, i.e. wall time on idle
// cores) and "tower_s": 32 blocks extrapolated from the CPU time of one block divided by the
// thread count, which does not depend on how busy the shared machine is; wall "Time" is also shown.
// BM_LmPrefillLayer does the same for one Qwen2-VL-2B (1.5B LM) decoder layer on a 512-token
// prompt and extrapolates prompt tokens per second over its 28 layers.
#include <benchmark/benchmark.h>
#include <time.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/compute.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace {

using vlm::Tensor;

using vlm::bench::process_cpu_seconds;

std::vector<float> rand_vec(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

vlm::MatMulWeight weight(int64_t N, int64_t K, uint32_t seed) {
  auto w = rand_vec(size_t(N * K), -0.03f, 0.03f, seed);
  return vlm::MatMulWeight::dense(Tensor::from_floats(w, {N, K}).to(vlm::DType::BF16), "vit");
}

void BM_VitBlock(benchmark::State& state) {
  const int64_t N = 1024, E = 1280, M = 5120, heads = 16, hd = 80;
  const vlm::Compute base = vlm::Compute::make();
  const vlm::Compute env{base.pool, state.range(0) ? vlm::Precision::kFast : vlm::Precision::kExact, nullptr, {}};
  // Weights as a model loads them for env's precision (fast: repacked by prepare()).
  static vlm::MatMulWeight weights[2][4];
  vlm::MatMulWeight(&w)[4] = weights[state.range(0) ? 1 : 0];
  if (!w[0].defined()) {
    w[0] = weight(3 * E, E, 1), w[1] = weight(E, E, 2), w[2] = weight(M, E, 3), w[3] = weight(E, M, 4);
    for (auto& m : w) m.prepare(env);
  }
  const vlm::MatMulWeight &qkv_w = w[0], &proj_w = w[1], &fc1_w = w[2], &fc2_w = w[3];
  auto qkv_b = rand_vec(size_t(3 * E), -0.1f, 0.1f, 5), proj_b = rand_vec(size_t(E), -0.1f, 0.1f, 6);
  auto fc1_b = rand_vec(size_t(M), -0.1f, 0.1f, 7), fc2_b = rand_vec(size_t(E), -0.1f, 0.1f, 8);
  auto ln_w = rand_vec(size_t(E), 0.5f, 1.5f, 9), ln_b = rand_vec(size_t(E), -0.1f, 0.1f, 10);
  auto cos = rand_vec(size_t(N * hd), -1.f, 1.f, 11), sin = rand_vec(size_t(N * hd), -1.f, 1.f, 12);
  const auto x0 = rand_vec(size_t(N * E), -1.f, 1.f, 13);
  std::vector<float> x = x0, ln(size_t(N * E)), qkv(size_t(N * 3 * E)), attn(size_t(N * E)), tmp(size_t(N * E)),
                     hidden(size_t(N * M));
  vlm::AttentionMask mask;
  mask.causal = false;
  mask.segments = {0, N};
  enum { kNorm, kQkv, kRope, kAttn, kProj, kFc1, kAct, kFc2, kAdd, kStages };
  static const char* kNames[kStages] = {"norm", "qkv", "rope", "attn", "proj", "fc1", "act", "fc2", "add"};
  double stage[kStages] = {};
  double clock = process_cpu_seconds();
  auto lap = [&](int s) {
    const double now = process_cpu_seconds();
    stage[s] += now - clock;
    clock = now;
  };
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    clock = process_cpu_seconds();
    vlm::layer_norm(env, x.data(), ln_w.data(), ln_b.data(), N, E, 1e-6f, ln.data());
    lap(kNorm);
    qkv_w.forward(env, ln.data(), N, qkv.data(), qkv_b.data());
    lap(kQkv);
    vlm::apply_rope(qkv.data(), N, 3 * E, int(heads), int(hd), cos.data(), sin.data());
    vlm::apply_rope(qkv.data() + E, N, 3 * E, int(heads), int(hd), cos.data(), sin.data());
    lap(kRope);
    vlm::attention(env, qkv.data(), 3 * E, qkv.data() + E, qkv.data() + 2 * E, 3 * E, N, N, int(heads), int(heads),
                   int(hd), 1.f / std::sqrt(float(hd)), mask, attn.data());
    lap(kAttn);
    proj_w.forward(env, attn.data(), N, tmp.data(), proj_b.data());
    lap(kProj);
    vlm::add_inplace(x.data(), tmp.data(), N * E);
    vlm::layer_norm(env, x.data(), ln_w.data(), ln_b.data(), N, E, 1e-6f, ln.data());
    lap(kNorm);
    fc1_w.forward(env, ln.data(), N, hidden.data(), fc1_b.data());
    lap(kFc1);
    vlm::quick_gelu(env, hidden.data(), N * M);
    lap(kAct);
    fc2_w.forward(env, hidden.data(), N, tmp.data(), fc2_b.data());
    lap(kFc2);
    vlm::add_inplace(x.data(), tmp.data(), N * E);
    lap(kAdd);
    benchmark::DoNotOptimize(x.data());
    state.PauseTiming();
    x = x0;  // keep activations in range
    state.ResumeTiming();
  }
  const double iters = double(state.iterations()), threads = double(env.num_threads());
  for (int s = 0; s < kStages; ++s) state.counters[std::string("ms_") + kNames[s]] = 1e3 * stage[s] / iters / threads;
  const double block_s = (process_cpu_seconds() - cpu0) / iters / threads;
  state.counters["tower_s"] = 32 * block_s;
  const double flop = 2.0 * N * E * (3 * E + E + 2 * M) + 4.0 * N * N * E;
  state.counters["GFLOP/s"] = flop * 1e-9 / block_s;
  state.SetLabel(state.range(0) ? "fast" : "exact");
}
BENCHMARK(BM_VitBlock)->ArgName("fast")->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_LmPrefillLayer(benchmark::State& state) {
  const int64_t T = 512, E = 1536, F = 8960, heads = 12, kv_heads = 2, hd = 128, kvd = kv_heads * hd;
  const vlm::Compute base = vlm::Compute::make();
  const vlm::Compute env{base.pool, state.range(0) ? vlm::Precision::kFast : vlm::Precision::kExact, nullptr, {}};
  static vlm::MatMulWeight weights[2][7];  // per precision, as a model loads them (see BM_VitBlock)
  vlm::MatMulWeight(&w)[7] = weights[state.range(0) ? 1 : 0];
  if (!w[0].defined()) {
    w[0] = weight(E, E, 21), w[1] = weight(kvd, E, 22), w[2] = weight(kvd, E, 23), w[3] = weight(E, E, 24);
    w[4] = weight(F, E, 25), w[5] = weight(F, E, 26), w[6] = weight(E, F, 27);
    for (auto& m : w) m.prepare(env);
  }
  const vlm::MatMulWeight &q_w = w[0], &k_w = w[1], &v_w = w[2], &o_w = w[3], &gate_w = w[4], &up_w = w[5],
                          &down_w = w[6];
  auto q_b = rand_vec(size_t(E), -0.1f, 0.1f, 28), kv_b = rand_vec(size_t(kvd), -0.1f, 0.1f, 29);
  auto norm_w = rand_vec(size_t(E), 0.5f, 1.5f, 30);
  auto cos = rand_vec(size_t(T * hd), -1.f, 1.f, 31), sin = rand_vec(size_t(T * hd), -1.f, 1.f, 32);
  const auto x0 = rand_vec(size_t(T * E), -1.f, 1.f, 33);
  std::vector<float> x = x0, h(size_t(T * E)), q(size_t(T * E)), k(size_t(T * kvd)), v(size_t(T * kvd)),
                     attn(size_t(T * E)), tmp(size_t(T * E)), gate(size_t(T * F)), up(size_t(T * F));
  const vlm::AttentionMask mask;  // causal
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    vlm::rms_norm(env, x.data(), norm_w.data(), T, E, 1e-6f, h.data());
    q_w.forward(env, h.data(), T, q.data(), q_b.data());
    k_w.forward(env, h.data(), T, k.data(), kv_b.data());
    v_w.forward(env, h.data(), T, v.data(), kv_b.data());
    vlm::apply_rope(q.data(), T, E, int(heads), int(hd), cos.data(), sin.data());
    vlm::apply_rope(k.data(), T, kvd, int(kv_heads), int(hd), cos.data(), sin.data());
    vlm::attention(env, q.data(), E, k.data(), v.data(), kvd, T, T, int(heads), int(kv_heads), int(hd),
                   1.f / std::sqrt(float(hd)), mask, attn.data());
    o_w.forward(env, attn.data(), T, tmp.data());
    vlm::add_inplace(x.data(), tmp.data(), T * E);
    vlm::rms_norm(env, x.data(), norm_w.data(), T, E, 1e-6f, h.data());
    gate_w.forward(env, h.data(), T, gate.data());
    up_w.forward(env, h.data(), T, up.data());
    vlm::silu_mul(env, gate.data(), up.data(), T * F);
    down_w.forward(env, gate.data(), T, tmp.data());
    vlm::add_inplace(x.data(), tmp.data(), T * E);
    benchmark::DoNotOptimize(x.data());
    state.PauseTiming();
    x = x0;
    state.ResumeTiming();
  }
  const double layer_s = (process_cpu_seconds() - cpu0) / double(state.iterations()) / double(env.num_threads());
  state.counters["prefill_tok/s"] = double(T) / (28 * layer_s);
  state.SetLabel(state.range(0) ? "fast" : "exact");
}
BENCHMARK(BM_LmPrefillLayer)->ArgName("fast")->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
