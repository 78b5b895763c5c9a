// PaliGemma forward passes at paligemma-3b-mix-448 widths (SigLIP 1152 wide / 16 heads / MLP 4304,
// 448px = 1024 patches; Gemma 2048 / 8 heads / 1 kv head / head_dim 256 / MLP 16384) with one
// vision block, one decoder layer and an 8192-token vocabulary, random BF16 weights written once
// to a temporary directory. Times are per block / per layer: multiply by 27 vision blocks and 18
// decoder layers for the real model.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "io/checkpoint.h"
#include "models/paligemma/paligemma.h"

namespace {

// VLM_THREADS or one thread per core; VLM_PRECISION picks exact (default) or fast kernels.
const vlm::Compute& bench_env() {
  static vlm::Compute env = vlm::Compute::make(0, vlm::precision_from_env(vlm::Precision::kExact));
  return env;
}

using namespace vlm;

Tensor random_bf16(Shape shape, float scale, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = u(rng);
  return Tensor::from_floats(v, shape).to(DType::BF16);
}

constexpr int64_t kVocab = 8192;
constexpr int32_t kImageToken = 8000;

const PaliGemmaModel& bench_model() {
  static std::unique_ptr<PaliGemmaModel> model = [] {
    namespace fs = std::filesystem;
    fs::path dir = fs::temp_directory_path() / ("vlm_paligemma_bench_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    json cfg = read_json_file((fs::path(__FILE__).parent_path() / "configs/paligemma-3b-mix-448.config.json").string());
    cfg["vocab_size"] = kVocab;
    cfg["image_token_index"] = kImageToken;
    cfg["text_config"]["vocab_size"] = kVocab;
    cfg["text_config"]["num_hidden_layers"] = 1;
    cfg["vision_config"]["num_hidden_layers"] = 1;
    std::ofstream(dir / "config.json") << cfg.dump();
    const int64_t E = 1152, EI = 4304, N = 1024, H = 2048, I = 16384, Q = 8 * 256, KV = 256;
    std::mt19937 rng(7);
    std::vector<std::pair<std::string, Tensor>> w;
    auto lin = [&](const std::string& name, int64_t out, int64_t in, bool bias) {
      w.push_back({name + ".weight", random_bf16({out, in}, 1.f / std::sqrt(float(in)), rng)});
      if (bias) w.push_back({name + ".bias", random_bf16({out}, 0.1f, rng)});
    };
    auto norm = [&](const std::string& name, int64_t n, bool bias) {
      w.push_back({name + ".weight", Tensor::from_floats(std::vector<float>(size_t(n), 1.f), {n}).to(DType::BF16)});
      if (bias) w.push_back({name + ".bias", Tensor::zeros(DType::BF16, {n})});
    };
    const std::string v = "vision_tower.vision_model.", l = "language_model.model.";
    w.push_back({v + "embeddings.patch_embedding.weight", random_bf16({E, 3, 14, 14}, 0.03f, rng)});
    w.push_back({v + "embeddings.patch_embedding.bias", random_bf16({E}, 0.1f, rng)});
    w.push_back({v + "embeddings.position_embedding.weight", random_bf16({N, E}, 0.1f, rng)});
    const std::string b = v + "encoder.layers.0.";
    norm(b + "layer_norm1", E, true);
    norm(b + "layer_norm2", E, true);
    for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"}) lin(b + "self_attn." + p, E, E, true);
    lin(b + "mlp.fc1", EI, E, true);
    lin(b + "mlp.fc2", E, EI, true);
    norm(v + "post_layernorm", E, true);
    lin("multi_modal_projector.linear", H, E, true);
    w.push_back({l + "embed_tokens.weight", random_bf16({kVocab, H}, 1.f, rng)});
    norm(l + "layers.0.input_layernorm", H, false);
    norm(l + "layers.0.post_attention_layernorm", H, false);
    lin(l + "layers.0.self_attn.q_proj", Q, H, false);
    lin(l + "layers.0.self_attn.k_proj", KV, H, false);
    lin(l + "layers.0.self_attn.v_proj", KV, H, false);
    lin(l + "layers.0.self_attn.o_proj", H, Q, false);
    lin(l + "layers.0.mlp.gate_proj", I, H, false);
    lin(l + "layers.0.mlp.up_proj", I, H, false);
    lin(l + "layers.0.mlp.down_proj", H, I, false);
    norm(l + "norm", H, false);
    save_safetensors((dir / "model.safetensors").string(), w, {{"format", "pt"}});
    auto m = std::make_unique<PaliGemmaModel>(Checkpoint::open(dir.string()));  // keeps the mapping alive
    fs::remove_all(dir);
    return m;
  }();
  return *model;
}

// SigLIP: patch embedding + one encoder block + post-LN + projector on a 448x448 image.
void BM_VisionOneBlock(benchmark::State& state) {
  const PaliGemmaModel& m = bench_model();
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> px(3 * 448 * 448);
  for (auto& x : px) x = u(rng);
  Tensor pixels = Tensor::from_floats(px, {3, 448, 448});
  for (auto _ : state) benchmark::DoNotOptimize(m.project(bench_env(), m.vision().encode(bench_env(), pixels)));
  state.counters["patches"] = 1024;
}
BENCHMARK(BM_VisionOneBlock)->Unit(benchmark::kMillisecond)->UseRealTime();

ModelInput text_prompt(int64_t n) {
  ModelInput in;
  for (int64_t i = 0; i < n; ++i) in.ids.push_back(int32_t((i * 37) % 7000 + 3));
  return in;
}

// Arg: prompt tokens (bidirectional prefix attention). One decoder layer + the head for the last row.
void BM_PrefillOneLayer(benchmark::State& state) {
  const PaliGemmaModel& m = bench_model();
  ModelInput in = text_prompt(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(m.start(bench_env())->prefill(in));
  state.counters["tok/s"] = benchmark::Counter(double(state.range(0)), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PrefillOneLayer)->Arg(1040)->Unit(benchmark::kMillisecond)->UseRealTime();

// Arg: context length before the step.
void BM_DecodeStepOneLayer(benchmark::State& state) {
  const PaliGemmaModel& m = bench_model();
  auto seq = m.start(bench_env());
  seq->prefill(text_prompt(state.range(0)));
  int32_t tok = 5;
  for (auto _ : state) {
    std::vector<float> logits = seq->step(tok);
    tok = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
}
BENCHMARK(BM_DecodeStepOneLayer)->Arg(1040)->Unit(benchmark::kMicrosecond)->UseRealTime()->Iterations(200);

}  // namespace
BENCHMARK_MAIN();
