// Qwen2-VL forward passes at Qwen2-VL-2B widths (vision 1280 wide / 16 heads, LM 1536 / 12 heads /
// 2 kv heads, intermediate 8960) with one vision block, one decoder layer and an 8192-token
// vocabulary, random BF16 weights written once to a temporary directory. Times are per block /
// per layer; multiply by 32 vision blocks and 28 decoder layers for the real model.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "io/checkpoint.h"
#include "models/qwen2_vl/qwen2_vl.h"

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

const Qwen2VLModel& bench_model() {
  static std::unique_ptr<Qwen2VLModel> model = [] {
    namespace fs = std::filesystem;
    fs::path dir = fs::temp_directory_path() / ("vlm_qwen2vl_bench_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    json cfg = read_json_file((fs::path(__FILE__).parent_path() / "configs/qwen2-vl-2b-instruct.config.json").string());
    cfg["num_hidden_layers"] = 1;
    cfg["vocab_size"] = 8192;
    cfg["vision_config"]["depth"] = 1;
    std::ofstream(dir / "config.json") << cfg.dump();
    const int64_t E = 1280, H = 1536, I = 8960, KV = 256, V = 8192;
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
    w.push_back({"visual.patch_embed.proj.weight", random_bf16({E, 3, 2, 14, 14}, 0.03f, rng)});
    norm("visual.blocks.0.norm1", E, true);
    norm("visual.blocks.0.norm2", E, true);
    lin("visual.blocks.0.attn.qkv", 3 * E, E, true);
    lin("visual.blocks.0.attn.proj", E, E, true);
    lin("visual.blocks.0.mlp.fc1", 4 * E, E, true);
    lin("visual.blocks.0.mlp.fc2", E, 4 * E, true);
    norm("visual.merger.ln_q", E, true);
    lin("visual.merger.mlp.0", 4 * E, 4 * E, true);
    lin("visual.merger.mlp.2", H, 4 * E, true);
    w.push_back({"model.embed_tokens.weight", random_bf16({V, H}, 1.f, rng)});
    norm("model.layers.0.input_layernorm", H, false);
    norm("model.layers.0.post_attention_layernorm", H, false);
    lin("model.layers.0.self_attn.q_proj", H, H, true);
    lin("model.layers.0.self_attn.k_proj", KV, H, true);
    lin("model.layers.0.self_attn.v_proj", KV, H, true);
    lin("model.layers.0.self_attn.o_proj", H, H, false);
    lin("model.layers.0.mlp.gate_proj", I, H, false);
    lin("model.layers.0.mlp.up_proj", I, H, false);
    lin("model.layers.0.mlp.down_proj", H, I, false);
    norm("model.norm", H, false);
    save_safetensors((dir / "model.safetensors").string(), w, {{"format", "pt"}});
    auto m = Qwen2VLModel::load(Checkpoint::open(dir.string()));  // weights are copied/mapped
    fs::remove_all(dir);
    return m;
  }();
  return *model;
}

// Arg: image side in pixels (448 -> 32x32 patches = 1024 rows, 256 LLM tokens).
void BM_VisionEncodeOneBlock(benchmark::State& state) {
  const Qwen2VLModel& m = bench_model();
  const int64_t side = state.range(0) / 14, N = side * side;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> px(size_t(N * 1176));
  for (auto& x : px) x = nd(rng);
  for (auto _ : state) benchmark::DoNotOptimize(m.vision().encode(bench_env(), px.data(), N, {{1, side, side}}));
  state.counters["patches"] = double(N);
}
BENCHMARK(BM_VisionEncodeOneBlock)->Arg(448)->Unit(benchmark::kMillisecond)->UseRealTime();

ModelInput text_prompt(int64_t n) {
  ModelInput in;
  for (int64_t i = 0; i < n; ++i) in.ids.push_back(int32_t((i * 37) % 8000));
  return in;
}

// Arg: prompt tokens. One decoder layer + the 8192-row head for the last position.
void BM_PrefillOneLayer(benchmark::State& state) {
  const Qwen2VLModel& m = bench_model();
  ModelInput in = text_prompt(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(m.start(bench_env())->prefill(in));
  state.counters["tok/s"] = benchmark::Counter(double(state.range(0)), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PrefillOneLayer)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

// Arg: context length before the step.
void BM_DecodeStepOneLayer(benchmark::State& state) {
  const Qwen2VLModel& m = bench_model();
  auto seq = m.start(bench_env());
  seq->prefill(text_prompt(state.range(0)));
  int32_t tok = 5;
  for (auto _ : state) {
    std::vector<float> logits = seq->step(tok);
    tok = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
}
BENCHMARK(BM_DecodeStepOneLayer)->Arg(512)->Unit(benchmark::kMicrosecond)->UseRealTime()->Iterations(200);

// The same step with a random rank-Arg(1) LoRA adapter on q_proj and v_proj (the low-rank path's cost).
void BM_DecodeStepOneLayerLora(benchmark::State& state) {
  const Qwen2VLModel& m = bench_model();
  const nn::DecoderConfig& cfg = m.decoder().config();
  const int64_t r = state.range(1);
  auto adapter = std::make_shared<nn::LoraAdapter>();
  adapter->layers.resize(size_t(cfg.num_layers));
  std::mt19937 rng(11);
  for (auto& layer : adapter->layers)
    for (int slot : {nn::kLoraQ, nn::kLoraV}) {
      const auto [in, out] = nn::lora_slot_dims(cfg, slot);
      layer[size_t(slot)] = nn::LoraModule::make(r, 1.f, random_bf16({r, in}, 0.05f, rng).to_floats(),
                                                 random_bf16({out, r}, 0.05f, rng).to_floats(), in, out, "bench");
    }
  auto seq = m.start(bench_env());
  seq->set_adapters({{adapter, 1.f}});
  seq->prefill(text_prompt(state.range(0)));
  int32_t tok = 5;
  for (auto _ : state) {
    std::vector<float> logits = seq->step(tok);
    tok = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
}
BENCHMARK(BM_DecodeStepOneLayerLora)->Args({512, 8})->Unit(benchmark::kMicrosecond)->UseRealTime()->Iterations(200);

}  // namespace

BENCHMARK_MAIN();
