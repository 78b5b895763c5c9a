// vlm-synth: writes synthetic full-size checkpoints (the real configuration, random weights) for
// end-to-end benchmarks, in the Hugging Face bf16 layout or the mlx-community quantized layouts.
//
//   vlm-synth --arch qwen2-vl-2b      --layout hf-bf16|mlx-4bit        --out DIR
//   vlm-synth --arch qwen2.5-vl-3b    --layout hf-bf16|mlx-4bit|mlx-8bit --out DIR
//   vlm-synth --arch paligemma-3b-448 --layout hf-bf16|mlx-8bit-2024   --out DIR
//   vlm-synth --arch gemma-3-4b       --layout hf-bf16|mlx-4bit|mlx-8bit --out DIR
//   vlm-synth --lora-for MODEL_DIR [--rank 8] --out DIR   (random MLX LoRA adapter on every q/v_proj)
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "nn/quantize.h"

namespace fs = std::filesystem;
using namespace vlm;

namespace {

enum class Init { Normal, Ones, Zeros };

struct Spec {
  std::string name;  // module path for linears ("<path>.weight" is written), full name otherwise
  Shape shape;
  Init init = Init::Normal;
  bool matrix = false;  // a Linear/Embedding weight, quantizable
  bool quantize = false;
  int bits = 0;
  DType dtype = DType::BF16;
  int64_t pad_rows_to = 0, pad_cols_to = 0;  // zero padding (mlx-vlm 0.1.0's SigLIP MLP)
};

struct Layout {
  bool mlx = false;
  int bits = 0;
  bool legacy_2024 = false;  // f16 everywhere, vision quantized, padded SigLIP MLP in f32
};

// A fast deterministic normal generator (sum of uniforms is plenty for benchmark weights).
struct Rng {
  uint64_t s;
  float normal(float stddev) {
    float acc = 0;
    for (int i = 0; i < 4; ++i) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      acc += float(s >> 40) / float(1 << 24);
    }
    return (acc - 2.0f) * 1.7320508f * stddev;
  }
};

std::vector<float> make_values(const Spec& s, Rng& rng) {
  int64_t n = shape_numel(s.shape);
  std::vector<float> v(static_cast<size_t>(n));
  if (s.init == Init::Ones) std::fill(v.begin(), v.end(), 1.0f);
  if (s.init == Init::Normal)
    for (auto& x : v) x = rng.normal(0.02f);
  return v;
}

Tensor to_dtype(const std::vector<float>& v, const Shape& shape, DType dtype) {
  return Tensor::from_floats(v, shape).to(dtype);
}

// Streams tensors into a safetensors file whose header is known up front.
class StreamingWriter {
 public:
  void add(const std::string& name, DType dtype, const Shape& shape) {
    size_t bytes = size_t(shape_numel(shape)) * dtype_size(dtype);
    header_[name] = {{"dtype", dtype_name(dtype)}, {"shape", shape}, {"data_offsets", {offset_, offset_ + bytes}}};
    order_.push_back(name);
    offset_ += bytes;
  }
  void open(const std::string& path) {
    out_.open(path, std::ios::binary);
    if (!out_) fail(path, ": cannot open for writing");
    json h = header_;
    h["__metadata__"] = {{"format", format_}};
    std::string text = h.dump();
    while ((text.size() + 8) % 8) text += ' ';
    uint64_t len = text.size();
    for (int i = 0; i < 8; ++i) out_.put(char((len >> (8 * i)) & 0xff));
    out_ << text;
  }
  void write(const std::string& name, const Tensor& t) {
    if (order_.at(next_++) != name) fail("internal: tensors written out of order at ", name);
    out_.write(static_cast<const char*>(t.raw()), std::streamsize(t.nbytes()));
  }
  std::string format_ = "pt";
  json header_ = json::object();
  std::vector<std::string> order_;
  size_t offset_ = 0, next_ = 0;
  std::ofstream out_;
};

std::vector<Spec> qwen2_vl_specs(const json& cfg, const Layout& layout) {
  const int64_t H = cfg["hidden_size"], I = cfg["intermediate_size"], V = cfg["vocab_size"];
  const int64_t L = cfg["num_hidden_layers"], heads = cfg["num_attention_heads"], kv = cfg["num_key_value_heads"];
  const int64_t hd = H / heads;
  const json& vc = cfg["vision_config"];
  // Qwen2.5-VL: RMSNorm (no bias), SwiGLU MLP with biases, vision width in hidden_size.
  const bool v25 = cfg.value("model_type", "") == "qwen2_5_vl";
  const int64_t E = v25 ? vc.value("hidden_size", 1280) : vc.value("embed_dim", 1280), depth = vc.value("depth", 32),
                merged_out = v25 ? vc.value("out_hidden_size", 2048) : vc.value("hidden_size", 3584);
  const int64_t mlp = v25 ? vc.value("intermediate_size", 3420) : E * vc.value("mlp_ratio", 4);
  std::string vis = layout.mlx ? "vision_tower." : "visual.";
  std::string lm = layout.mlx ? "language_model.model." : "model.";
  auto linear = [&](std::vector<Spec>& out, const std::string& path, int64_t o, int64_t i, bool bias, bool vision) {
    bool q = layout.mlx && (!vision || layout.legacy_2024) && i % 64 == 0;
    out.push_back({path, {o, i}, Init::Normal, true, q, layout.bits});
    if (bias) out.push_back({path + ".bias", {o}, Init::Zeros});
  };
  auto norm = [&](std::vector<Spec>& out, const std::string& path, int64_t n, bool bias) {
    out.push_back({path + ".weight", {n}, Init::Ones});
    if (bias) out.push_back({path + ".bias", {n}, Init::Zeros});
  };
  std::vector<Spec> s;
  s.push_back({vis + "patch_embed.proj.weight", layout.mlx ? Shape{E, 2, 14, 14, 3} : Shape{E, 3, 2, 14, 14}});
  for (int64_t b = 0; b < depth; ++b) {
    std::string p = vis + "blocks." + std::to_string(b) + ".";
    norm(s, p + "norm1", E, !v25);
    linear(s, p + "attn.qkv", 3 * E, E, true, true);
    linear(s, p + "attn.proj", E, E, true, true);
    norm(s, p + "norm2", E, !v25);
    if (v25) {
      linear(s, p + "mlp.gate_proj", mlp, E, true, true);
      linear(s, p + "mlp.up_proj", mlp, E, true, true);
      linear(s, p + "mlp.down_proj", E, mlp, true, true);
    } else {
      linear(s, p + "mlp.fc1", mlp, E, true, true);
      linear(s, p + "mlp.fc2", E, mlp, true, true);
    }
  }
  norm(s, vis + "merger.ln_q", E, !v25);
  linear(s, vis + "merger.mlp.0", 4 * E, 4 * E, true, true);
  linear(s, vis + "merger.mlp.2", merged_out, 4 * E, true, true);
  linear(s, lm + "embed_tokens", V, H, false, false);
  for (int64_t l = 0; l < L; ++l) {
    std::string p = lm + "layers." + std::to_string(l) + ".";
    norm(s, p + "input_layernorm", H, false);
    linear(s, p + "self_attn.q_proj", heads * hd, H, true, false);
    linear(s, p + "self_attn.k_proj", kv * hd, H, true, false);
    linear(s, p + "self_attn.v_proj", kv * hd, H, true, false);
    linear(s, p + "self_attn.o_proj", H, heads * hd, false, false);
    norm(s, p + "post_attention_layernorm", H, false);
    linear(s, p + "mlp.gate_proj", I, H, false, false);
    linear(s, p + "mlp.up_proj", I, H, false, false);
    linear(s, p + "mlp.down_proj", H, I, false, false);
  }
  norm(s, lm + "norm", H, false);
  if (!cfg.value("tie_word_embeddings", true))
    linear(s, layout.mlx ? "language_model.lm_head" : "lm_head", V, H, false, false);
  return s;
}

std::vector<Spec> paligemma_specs(const json& cfg, const Layout& layout) {
  const json& tc = cfg["text_config"];
  const json& vc = cfg["vision_config"];
  const int64_t H = tc["hidden_size"], I = tc["intermediate_size"], V = tc.value("vocab_size", 257216);
  const int64_t L = tc["num_hidden_layers"], heads = tc["num_attention_heads"], kv = tc["num_key_value_heads"];
  const int64_t hd = tc.value("head_dim", 256);
  const int64_t E = vc["hidden_size"], VI = vc["intermediate_size"], depth = vc["num_hidden_layers"];
  const int64_t patch = vc.value("patch_size", 14), image = vc.value("image_size", 224);
  const int64_t positions = (image / patch) * (image / patch);
  const int64_t VIpad = layout.legacy_2024 && VI % 64 ? (VI + 63) / 64 * 64 : VI;
  std::string vis = "vision_tower.vision_model.", lm = "language_model.model.";
  auto linear = [&](std::vector<Spec>& out, const std::string& path, int64_t o, int64_t i, bool bias, bool vision) {
    bool q = layout.mlx && (!vision || layout.legacy_2024) && i % 64 == 0;
    out.push_back({path, {o, i}, Init::Normal, true, q, layout.bits});
    if (bias) out.push_back({path + ".bias", {o}, Init::Zeros});
  };
  auto norm = [&](std::vector<Spec>& out, const std::string& path, int64_t n, bool bias, Init w = Init::Ones) {
    out.push_back({path + ".weight", {n}, w});
    if (bias) out.push_back({path + ".bias", {n}, Init::Zeros});
  };
  std::vector<Spec> s;
  s.push_back(
      {vis + "embeddings.patch_embedding.weight", layout.mlx ? Shape{E, patch, patch, 3} : Shape{E, 3, patch, patch}});
  s.push_back({vis + "embeddings.patch_embedding.bias", {E}, Init::Zeros});
  linear(s, vis + "embeddings.position_embedding", positions, E, false, true);
  for (int64_t b = 0; b < depth; ++b) {
    std::string p = vis + "encoder.layers." + std::to_string(b) + ".";
    norm(s, p + "layer_norm1", E, true);
    for (const char* m : {"q_proj", "k_proj", "v_proj", "out_proj"}) linear(s, p + "self_attn." + m, E, E, true, true);
    norm(s, p + "layer_norm2", E, true);
    size_t first = s.size();
    linear(s, p + "mlp.fc1", VIpad, E, true, true);
    linear(s, p + "mlp.fc2", E, VIpad, true, true);
    if (VIpad != VI) {  // mlx-vlm 0.1.0 zero-padded these in float32
      for (size_t i = first; i < s.size(); ++i) s[i].dtype = DType::F32;
      s[first].pad_rows_to = VIpad, s[first].shape[0] = VI;
      s[first + 1].pad_rows_to = VIpad, s[first + 1].shape[0] = VI;  // fc1.bias
      s[first + 2].pad_cols_to = VIpad, s[first + 2].shape[1] = VI;
    }
  }
  norm(s, vis + "post_layernorm", E, true);
  linear(s, "multi_modal_projector.linear", cfg.value("projection_dim", H), E, true, true);
  linear(s, lm + "embed_tokens", V, H, false, false);
  for (int64_t l = 0; l < L; ++l) {
    std::string p = lm + "layers." + std::to_string(l) + ".";
    norm(s, p + "input_layernorm", H, false, Init::Zeros);  // Gemma applies (1 + w)
    linear(s, p + "self_attn.q_proj", heads * hd, H, false, false);
    linear(s, p + "self_attn.k_proj", kv * hd, H, false, false);
    linear(s, p + "self_attn.v_proj", kv * hd, H, false, false);
    linear(s, p + "self_attn.o_proj", H, heads * hd, false, false);
    norm(s, p + "post_attention_layernorm", H, false, Init::Zeros);
    linear(s, p + "mlp.gate_proj", I, H, false, false);
    linear(s, p + "mlp.up_proj", I, H, false, false);
    linear(s, p + "mlp.down_proj", H, I, false, false);
  }
  norm(s, lm + "norm", H, false, Init::Zeros);
  return s;
}

// Gemma 3 under the names of the published checkpoints (transformers 4.50 = mlx-vlm): SigLIP and
// the projector stay bf16 in the MLX layouts, which (as mlx-vlm's sanitize) also carry a quantized
// copy of the embedding as language_model.lm_head.
std::vector<Spec> gemma3_specs(const json& cfg, const Layout& layout) {
  const json& tc = cfg["text_config"];
  const json& vc = cfg["vision_config"];
  const int64_t H = tc["hidden_size"], I = tc["intermediate_size"], V = tc.value("vocab_size", 262208);
  const int64_t L = tc["num_hidden_layers"], heads = tc.value("num_attention_heads", 8),
                kv = tc.value("num_key_value_heads", 4), hd = tc.value("head_dim", 256);
  const int64_t E = vc["hidden_size"], VI = vc["intermediate_size"], depth = vc["num_hidden_layers"];
  const int64_t patch = vc.value("patch_size", 14), image = vc.value("image_size", 224);
  const int64_t positions = (image / patch) * (image / patch);
  const std::string vis = "vision_tower.vision_model.", lm = "language_model.model.";
  auto linear = [&](std::vector<Spec>& out, const std::string& path, int64_t o, int64_t i, bool bias, bool vision) {
    out.push_back({path, {o, i}, Init::Normal, true, layout.mlx && !vision && i % 64 == 0, layout.bits});
    if (bias) out.push_back({path + ".bias", {o}, Init::Zeros});
  };
  auto norm = [&](std::vector<Spec>& out, const std::string& path, int64_t n, bool bias, Init w = Init::Ones) {
    out.push_back({path + ".weight", {n}, w});
    if (bias) out.push_back({path + ".bias", {n}, Init::Zeros});
  };
  std::vector<Spec> s;
  s.push_back(
      {vis + "embeddings.patch_embedding.weight", layout.mlx ? Shape{E, patch, patch, 3} : Shape{E, 3, patch, patch}});
  s.push_back({vis + "embeddings.patch_embedding.bias", {E}, Init::Zeros});
  linear(s, vis + "embeddings.position_embedding", positions, E, false, true);
  for (int64_t b = 0; b < depth; ++b) {
    const std::string p = vis + "encoder.layers." + std::to_string(b) + ".";
    norm(s, p + "layer_norm1", E, true);
    for (const char* m : {"q_proj", "k_proj", "v_proj", "out_proj"}) linear(s, p + "self_attn." + m, E, E, true, true);
    norm(s, p + "layer_norm2", E, true);
    linear(s, p + "mlp.fc1", VI, E, true, true);
    linear(s, p + "mlp.fc2", E, VI, true, true);
  }
  norm(s, vis + "post_layernorm", E, true);
  s.push_back({"multi_modal_projector.mm_input_projection_weight", {E, H}});
  norm(s, "multi_modal_projector.mm_soft_emb_norm", E, false, Init::Zeros);  // Gemma applies (1 + w)
  linear(s, lm + "embed_tokens", V, H, false, false);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = lm + "layers." + std::to_string(l) + ".";
    for (const char* n :
         {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"})
      norm(s, p + n, H, false, Init::Zeros);
    linear(s, p + "self_attn.q_proj", heads * hd, H, false, false);
    linear(s, p + "self_attn.k_proj", kv * hd, H, false, false);
    linear(s, p + "self_attn.v_proj", kv * hd, H, false, false);
    linear(s, p + "self_attn.o_proj", H, heads * hd, false, false);
    norm(s, p + "self_attn.q_norm", hd, false, Init::Zeros);
    norm(s, p + "self_attn.k_norm", hd, false, Init::Zeros);
    linear(s, p + "mlp.gate_proj", I, H, false, false);
    linear(s, p + "mlp.up_proj", I, H, false, false);
    linear(s, p + "mlp.down_proj", H, I, false, false);
  }
  norm(s, lm + "norm", H, false, Init::Zeros);
  if (layout.mlx) linear(s, "language_model.lm_head", V, H, false, false);
  return s;
}

Shape padded_shape(const Spec& s) {
  Shape shape = s.shape;
  if (s.pad_rows_to) shape[0] = s.pad_rows_to;
  if (s.pad_cols_to) shape[1] = s.pad_cols_to;
  return shape;
}

std::vector<float> pad(const std::vector<float>& v, const Spec& s) {
  if (!s.pad_rows_to && !s.pad_cols_to) return v;
  Shape to = padded_shape(s);
  std::vector<float> out(static_cast<size_t>(shape_numel(to)), 0.f);
  int64_t rows = s.shape[0], cols = s.shape.size() > 1 ? s.shape[1] : 1, out_cols = to.size() > 1 ? to[1] : 1;
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(&out[size_t(r * out_cols)], &v[size_t(r * cols)], size_t(cols) * sizeof(float));
  return out;
}

void write_checkpoint(const std::vector<Spec>& specs, const Layout& layout, const std::string& path, uint64_t seed,
                      DType float_dtype) {
  StreamingWriter w;
  w.format_ = layout.mlx ? "mlx" : "pt";
  const int group = 64;
  for (const auto& s : specs) {
    Shape shape = padded_shape(s);
    DType dt = s.dtype == DType::F32 ? DType::F32 : float_dtype;
    std::string name = s.matrix ? s.name + ".weight" : s.name;
    if (s.quantize) {
      w.add(name, DType::U32, {shape[0], shape[1] * s.bits / 32});
      w.add(s.name + ".scales", dt, {shape[0], shape[1] / group});
      w.add(s.name + ".biases", dt, {shape[0], shape[1] / group});
    } else {
      w.add(name, dt, shape);
    }
  }
  w.open(path);
  Rng rng{seed * 0x9e3779b97f4a7c15ull + 1};
  size_t done = 0;
  ThreadPool pool(physical_core_count());
  for (const auto& s : specs) {
    Shape shape = padded_shape(s);
    std::vector<float> values = pad(make_values(s, rng), s);
    DType dt = s.dtype == DType::F32 ? DType::F32 : float_dtype;
    std::string name = s.matrix ? s.name + ".weight" : s.name;
    if (s.quantize) {
      nn::MlxQuantized q = nn::mlx_quantize(values.data(), shape[0], shape[1], s.bits, group, dt, &pool);
      w.write(name, q.packed);
      w.write(s.name + ".scales", q.scales);
      w.write(s.name + ".biases", q.biases);
    } else {
      w.write(name, to_dtype(values, shape, dt));
    }
    if (++done % 50 == 0) std::cerr << "\rvlm-synth: " << done << "/" << specs.size() << " tensors" << std::flush;
  }
  std::cerr << "\rvlm-synth: " << specs.size() << "/" << specs.size() << " tensors, " << w.offset_ / (1 << 20)
            << " MiB -> " << path << "\n";
}

void copy_model_file(const fs::path& from, const fs::path& to) {
  if (!fs::exists(from)) fail(from.string(), ": missing (needed for the synthetic model directory)");
  fs::copy_file(fs::canonical(from), to, fs::copy_options::overwrite_existing);
  fs::permissions(to, fs::perms::owner_write, fs::perm_options::add);
}

// A random MLX-format LoRA adapter (rank r, scale 2) on self_attn.q_proj and v_proj of every decoder
// layer of the model in `model_dir` (benchmarks: the cost of the low-rank path).
void write_lora(const fs::path& model_dir, int64_t rank, const fs::path& out, uint64_t seed) {
  json cfg = read_json_file((model_dir / "config.json").string());
  const json& t = cfg.contains("text_config") && cfg["text_config"].contains("hidden_size") ? cfg["text_config"] : cfg;
  const int64_t H = t.at("hidden_size").get<int64_t>(), layers = t.at("num_hidden_layers").get<int64_t>();
  const int64_t heads = t.at("num_attention_heads").get<int64_t>();
  const int64_t kv = t.value("num_key_value_heads", heads), hd = t.value("head_dim", H / heads);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 0.02f);
  auto random = [&](Shape shape) {
    std::vector<float> v(size_t(shape_numel(shape)));
    for (float& x : v) x = normal(rng);
    return Tensor::from_floats(v, shape);
  };
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (int64_t l = 0; l < layers; ++l)
    for (auto [name, outf] : {std::pair<const char*, int64_t>{"q_proj", heads * hd}, {"v_proj", kv * hd}}) {
      const std::string p = "language_model.model.layers." + std::to_string(l) + ".self_attn." + name;
      tensors.emplace_back(p + ".lora_a", random({H, rank}));
      tensors.emplace_back(p + ".lora_b", random({rank, outf}));
    }
  fs::create_directories(out);
  save_safetensors((out / "adapters.safetensors").string(), tensors, {{"format", "mlx"}});
  json ac = {{"fine_tune_type", "lora"},
             {"num_layers", layers},
             {"lora_parameters",
              {{"rank", rank}, {"scale", 2.0}, {"dropout", 0.0}, {"keys", {"self_attn.q_proj", "self_attn.v_proj"}}}}};
  std::ofstream(out / "adapter_config.json") << ac.dump(2) << "\n";
}

int run(int argc, char** argv) {
  std::string arch, layout_name, out, lora_for;
  int64_t rank = 8;
  uint64_t seed = 1;
  fs::path repo = fs::path(VLM_SOURCE_DIR);
  fs::path shared = fs::path(VLM_SHARED_DIR);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) fail("missing value after ", a);
      return argv[++i];
    };
    if (a == "--arch")
      arch = next();
    else if (a == "--layout")
      layout_name = next();
    else if (a == "--out")
      out = next();
    else if (a == "--seed")
      seed = std::stoull(next());
    else if (a == "--shared")
      shared = next();
    else if (a == "--lora-for")
      lora_for = next();
    else if (a == "--rank")
      rank = std::stoll(next());
    else
      fail("unknown argument ", a);
  }
  if (!lora_for.empty() && !out.empty()) {
    if (rank <= 0) fail("--rank must be positive");
    write_lora(lora_for, rank, out, seed);
    return 0;
  }
  if (arch.empty() || layout_name.empty() || out.empty())
    fail(
        "usage: vlm-synth --arch qwen2-vl-2b|qwen2.5-vl-3b|paligemma-3b-448|gemma-3-4b --layout "
        "hf-bf16|mlx-4bit|mlx-8bit|mlx-8bit-2024 "
        "--out DIR");
  Layout layout;
  if (layout_name == "mlx-4bit")
    layout = {true, 4, false};
  else if (layout_name == "mlx-8bit")
    layout = {true, 8, false};
  else if (layout_name == "mlx-8bit-2024")
    layout = {true, 8, true};
  else if (layout_name != "hf-bf16")
    fail("unknown layout ", layout_name);
  fs::create_directories(out);
  fs::path dst(out);
  fs::path configs = repo / "bench" / "configs";
  json cfg;
  std::vector<Spec> specs;
  if (arch == "qwen2-vl-2b" || arch == "qwen2.5-vl-3b") {
    const std::string name = arch == "qwen2-vl-2b" ? "qwen2-vl-2b-instruct" : "qwen2.5-vl-3b-instruct";
    cfg = read_json_file((configs / (name + ".config.json")).string());
    specs = qwen2_vl_specs(cfg, layout);
    fs::path tok = repo / "models" / "qwen2-vl-shapes-4bit";
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "chat_template.json"})
      copy_model_file(tok / f, dst / f);
    copy_model_file(configs / (name + ".preprocessor_config.json"), dst / "preprocessor_config.json");
    copy_model_file(configs / (name + ".generation_config.json"), dst / "generation_config.json");
  } else if (arch == "paligemma-3b-448") {
    cfg = read_json_file((configs / "paligemma-3b-mix-448.config.json").string());
    if (layout.legacy_2024 && cfg["vision_config"]["intermediate_size"].get<int64_t>() % 64)
      cfg["vision_config"]["intermediate_size"] =
          (cfg["vision_config"]["intermediate_size"].get<int64_t>() + 63) / 64 * 64;
    json unpadded = read_json_file((configs / "paligemma-3b-mix-448.config.json").string());
    specs = paligemma_specs(unpadded, layout);
    fs::path tok = shared / "assets" / "paligemma-3b-mix-448";
    copy_model_file(tok / "tokenizer.json", dst / "tokenizer.json");
    copy_model_file(tok / "tokenizer_config.colpali.json", dst / "tokenizer_config.json");
    copy_model_file(tok / "special_tokens_map.colpali.json", dst / "special_tokens_map.json");
    copy_model_file(configs / "paligemma-3b-mix-448.preprocessor_config.json", dst / "preprocessor_config.json");
  } else if (arch == "gemma-3-4b") {
    cfg = read_json_file((configs / "gemma-3-4b-it.config.json").string());
    if (layout.legacy_2024) fail("gemma-3-4b has no 2024 layout (mlx-4bit or mlx-8bit)");
    specs = gemma3_specs(cfg, layout);
    const fs::path tok = shared / "assets" / "gemma-3";
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) copy_model_file(tok / f, dst / f);
    for (const char* f : {"preprocessor_config", "processor_config", "generation_config"})
      copy_model_file(configs / ("gemma-3-4b-it." + std::string(f) + ".json"), dst / (std::string(f) + ".json"));
  } else {
    fail("unknown arch ", arch, " (qwen2-vl-2b, qwen2.5-vl-3b, paligemma-3b-448 or gemma-3-4b)");
  }
  if (layout.mlx) {
    json q = {{"group_size", 64}, {"bits", layout.bits}};
    if (!layout.legacy_2024) q["mode"] = "affine";
    cfg["quantization"] = q;
    if (!layout.legacy_2024) cfg["quantization_config"] = q;
  }
  std::ofstream(dst / "config.json") << cfg.dump(2) << "\n";
  DType float_dtype = layout.legacy_2024 ? DType::F16 : DType::BF16;
  write_checkpoint(specs, layout, (dst / "model.safetensors").string(), seed, float_dtype);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "vlm-synth: error: " << e.what() << "\n";
    return 1;
  }
}
