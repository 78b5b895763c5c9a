// Per-token cost of next-token selection over a Qwen2-VL-sized vocabulary (151936 logits).
#include <benchmark/benchmark.h>

#include <random>

#include "generate/sampler.h"
#include "generate/stop.h"

namespace {

std::vector<float> random_logits(float scale) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> l(151936);
  for (float& v : l) v = normal(rng);
  return l;
}

void run(benchmark::State& state, vlm::SamplingParams p, float scale) {
  p.seed = 1;
  vlm::Sampler s(p);
  std::vector<float> logits = random_logits(scale);
  std::vector<int32_t> history(512, 42);
  for (auto _ : state) benchmark::DoNotOptimize(s.sample(logits, history));
}

void BM_Greedy(benchmark::State& state) {
  run(state, {}, 3.0f);
}
void BM_GreedyRepetitionPenalty(benchmark::State& state) {
  vlm::SamplingParams p;
  p.repetition_penalty = 1.1f;
  run(state, p, 3.0f);
}
void BM_Temperature(benchmark::State& state) {
  vlm::SamplingParams p;
  p.temperature = 0.7f;
  run(state, p, 3.0f);
}
void BM_TopP(benchmark::State& state) {
  vlm::SamplingParams p;
  p.temperature = 0.7f;
  p.top_p = 0.9f;
  run(state, p, float(state.range(0)));
}
void BM_TopK(benchmark::State& state) {
  vlm::SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 50;
  run(state, p, 3.0f);
}
void BM_LogSoftmaxTop5(benchmark::State& state) {
  std::vector<float> logits = random_logits(3.0f);
  for (auto _ : state) {
    auto lp = vlm::log_softmax(logits);
    benchmark::DoNotOptimize(vlm::top_k_entries(lp, 5));
  }
}
void BM_StopMatcher(benchmark::State& state) {
  for (auto _ : state) {
    vlm::StopStringMatcher m({"</answer>", "\n\nUser:"});
    for (int i = 0; i < 256; ++i) benchmark::DoNotOptimize(m.push(" token"));
  }
  state.SetItemsProcessed(state.iterations() * 256);
}

}  // namespace

BENCHMARK(BM_Greedy);
BENCHMARK(BM_GreedyRepetitionPenalty);
BENCHMARK(BM_Temperature);
BENCHMARK(BM_TopP)->Arg(1)->Arg(8);  // flat-ish and peaked distributions
BENCHMARK(BM_TopK);
BENCHMARK(BM_LogSoftmaxTop5);
BENCHMARK(BM_StopMatcher);
BENCHMARK_MAIN();
