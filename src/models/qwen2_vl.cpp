// Qwen2-VL: weight loading in every known checkpoint layout, the Qwen2 decoder with M-RoPE, and the
// generation Sequence.
#include "models/qwen2_vl.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "kernels/ops.h"
#include "nn/rope.h"

namespace vlm {

namespace {

std::string first_present(const Checkpoint& ckpt, const std::vector<std::string>& prefixes, const std::string& suffix,
                          const std::string& what) {
  for (auto& p : prefixes)
    if (ckpt.has(p + suffix)) return p;
  std::string tried;
  for (auto& p : prefixes) tried += (tried.empty() ? "'" : ", '") + p + suffix + "'";
  fail(ckpt.dir(), ": no ", what, " found (looked for ", tried, ")");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Logical parameter count: packed quantized words count as the values they hold.
int64_t count_parameters(const Checkpoint& ckpt) {
  int64_t n = 0;
  for (const std::string& name : ckpt.names()) {
    if (ends_with(name, ".scales") || ends_with(name, ".biases") || ends_with(name, "position_ids") ||
        ends_with(name, "inv_freq"))
      continue;
    Tensor t = ckpt.get(name);
    int64_t count = t.numel();
    if (ends_with(name, ".weight") && t.dtype() == DType::U32) {
      std::string module = name.substr(0, name.size() - 7);
      auto spec = ckpt.quantization().for_module(module);
      if (spec && ckpt.has(module + ".scales")) count = count * 32 / spec->bits;
    }
    n += count;
  }
  return n;
}

class Qwen2VLSequence : public Sequence {
 public:
  explicit Qwen2VLSequence(const Qwen2VLModel& model) : model_(model), cache_(model.make_cache(256)) {}

  std::vector<float> prefill(const ModelInput& input) override {
    if (input.ids.empty()) fail("qwen2_vl: prefill needs at least one token");
    double ms = 0;
    std::vector<float> x = model_.embed(input, nullptr, &ms);
    vision_ms_ += ms;
    MRopeIndex idx = qwen2vl_rope_index(input.ids, input.image_grids, input.video_grids, model_.config());
    // A later prefill continues after everything seen so far, like decoded tokens do.
    const int64_t offset = seen_ == 0 ? 0 : seen_ + delta_;
    for (auto& row : idx.positions)
      for (auto& p : row) p += offset;
    delta_ = seen_ == 0 ? idx.delta : delta_ + idx.delta;
    const int64_t n = int64_t(input.ids.size()), H = model_.config().hidden_size;
    const int64_t chunk = input.prefill_chunk > 0 ? input.prefill_chunk : n;
    std::vector<float> logits;
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t len = std::min(chunk, n - start);
      std::vector<float> part(x.begin() + start * H, x.begin() + (start + len) * H);
      std::array<std::vector<int64_t>, 3> pos;
      for (int a = 0; a < 3; ++a)
        pos[size_t(a)].assign(idx.positions[size_t(a)].begin() + start, idx.positions[size_t(a)].begin() + start + len);
      cache_.make_room(len);
      logits = model_.run_decoder(part, len, pos, cache_, start + len == n ? 1 : 0, nullptr);
    }
    seen_ += n;
    return logits;
  }

  std::vector<float> step(int32_t token) override {
    ModelInput in;
    in.ids = {token};
    std::vector<float> x = model_.embed(in, nullptr, nullptr);
    const int64_t p = seen_ + delta_;
    std::array<std::vector<int64_t>, 3> positions = {std::vector<int64_t>{p}, std::vector<int64_t>{p},
                                                     std::vector<int64_t>{p}};
    cache_.make_room(1);
    ++seen_;
    return model_.run_decoder(x, 1, positions, cache_, 1, nullptr);
  }

  int64_t length() const override { return seen_; }
  void set_kv_window(int64_t max_rows, int64_t keep) override { cache_.set_window(max_rows, keep); }
  double vision_ms() const override { return vision_ms_; }

 private:
  const Qwen2VLModel& model_;
  nn::KVCache cache_;
  int64_t seen_ = 0;  // tokens processed (positions count these, not the cache rows a window keeps)
  int64_t delta_ = 0;
  double vision_ms_ = 0;
};

}  // namespace

std::unique_ptr<Qwen2VLModel> Qwen2VLModel::load(const Checkpoint& ckpt) {
  namespace fs = std::filesystem;
  auto model = std::make_unique<Qwen2VLModel>();
  Qwen2VLConfig& c = model->cfg_;
  c = Qwen2VLConfig::from_json(ckpt.config(), ckpt.dir() + "/config.json");
  fs::path gen = fs::path(ckpt.dir()) / "generation_config.json";
  if (fs::exists(gen)) {
    json g = read_json_file(gen.string());
    if (g.contains("eos_token_id")) {
      const json& e = g["eos_token_id"];
      for (const json& v : e.is_array() ? e : json::array({e})) {
        if (!v.is_number_integer()) fail(gen.string(), ": eos_token_id entries must be integers");
        int32_t id = v.get<int32_t>();
        if (std::find(c.eos_ids.begin(), c.eos_ids.end(), id) == c.eos_ids.end()) c.eos_ids.push_back(id);
      }
    }
  }
  // <|endoftext|> ends generation in every Qwen2 vocabulary, also for conversions without
  // generation_config.json.
  if (c.vocab_size > 151643 && std::find(c.eos_ids.begin(), c.eos_ids.end(), 151643) == c.eos_ids.end())
    c.eos_ids.push_back(151643);

  // Layouts: HF ("model.", "visual.", "lm_head"), newer transformers ("model.language_model.",
  // "model.visual.", "lm_head"), mlx-vlm ("language_model.model.", "vision_tower.", "language_model.lm_head").
  const std::string lm = first_present(ckpt, {"model.language_model.", "language_model.model.", "model."},
                                       "embed_tokens.weight", "language-model embedding");
  const std::string vis =
      first_present(ckpt, {"model.visual.", "visual.", "vision_tower."}, "patch_embed.proj.weight", "vision tower");

  const int64_t H = c.hidden_size, hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads, I = c.intermediate_size;
  model->vision_ = Qwen2VLVisionTower::load(ckpt, vis, c.vision);
  model->embed_tokens_ = nn::Embedding::load(ckpt, lm + "embed_tokens", c.vocab_size, H);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    std::string p = lm + "layers." + std::to_string(i) + ".";
    Layer l;
    l.input_norm = nn::load_vector(ckpt, p + "input_layernorm.weight", H);
    l.post_norm = nn::load_vector(ckpt, p + "post_attention_layernorm.weight", H);
    l.q = nn::Linear::load(ckpt, p + "self_attn.q_proj", H, nh * hd, true);
    l.k = nn::Linear::load(ckpt, p + "self_attn.k_proj", H, nkv * hd, true);
    l.v = nn::Linear::load(ckpt, p + "self_attn.v_proj", H, nkv * hd, true);
    l.o = nn::Linear::load(ckpt, p + "self_attn.o_proj", nh * hd, H, false);
    l.gate = nn::Linear::load(ckpt, p + "mlp.gate_proj", H, I, false);
    l.up = nn::Linear::load(ckpt, p + "mlp.up_proj", H, I, false);
    l.down = nn::Linear::load(ckpt, p + "mlp.down_proj", I, H, false);
    model->layers_.push_back(std::move(l));
  }
  if (ckpt.has(lm + "layers." + std::to_string(c.num_layers) + ".input_layernorm.weight"))
    fail(ckpt.dir(), ": checkpoint has more decoder layers than num_hidden_layers = ", c.num_layers);
  model->final_norm_ = nn::load_vector(ckpt, lm + "norm.weight", H);
  if (c.tie_word_embeddings) {
    model->lm_head_ = model->embed_tokens_.as_matmul();
  } else {
    std::string head = ckpt.has("language_model.lm_head.weight") ? "language_model.lm_head" : "lm_head";
    model->lm_head_ = nn::load_matmul_weight(ckpt, head, c.vocab_size, H);
  }
  model->inv_freq_ = nn::rope_inv_freq(int(hd), c.rope_theta);

  ModelInfo& info = model->info_;
  info.model_type = "qwen2_vl";
  info.vocab_size = c.vocab_size;
  info.context_length = c.max_position_embeddings;
  info.eos_ids = c.eos_ids;
  info.num_parameters = count_parameters(ckpt);
  return model;
}

std::unique_ptr<Sequence> Qwen2VLModel::start() const {
  return std::make_unique<Qwen2VLSequence>(*this);
}

nn::KVCache Qwen2VLModel::make_cache(int64_t capacity) const {
  return nn::KVCache(int(cfg_.num_layers), int(cfg_.num_kv_heads), int(cfg_.head_dim), capacity);
}

std::vector<float> Qwen2VLModel::encode_vision(const Tensor& pixel_values, const std::vector<Grid>& grids,
                                               Qwen2VLVisionTrace* trace) const {
  const int64_t D = cfg_.vision.patch_dim();
  if (pixel_values.ndim() != 2 || pixel_values.dim(1) != D)
    fail("qwen2_vl: pixel values have shape ", shape_str(pixel_values.shape()), ", expected [N, ", D, "]");
  std::vector<float> px = pixel_values.to_floats();
  return vision_.encode(px.data(), pixel_values.dim(0), grids, trace);
}

std::vector<float> Qwen2VLModel::embed(const ModelInput& input, Qwen2VLTrace* trace, double* vision_ms) const {
  const int64_t L = int64_t(input.ids.size()), H = cfg_.hidden_size, D = cfg_.vision.patch_dim();
  const int64_t unit = cfg_.vision.spatial_merge_size * cfg_.vision.spatial_merge_size;
  std::vector<int64_t> ids(input.ids.begin(), input.ids.end());
  std::vector<float> x(size_t(L * H));
  embed_tokens_.lookup(ids.data(), L, x.data());

  auto scatter = [&](const std::vector<Tensor>& items, const std::vector<Grid>& grids, int32_t pad, const char* kind,
                     const char* token, Qwen2VLVisionTrace* vtrace, std::vector<float>* features_out) {
    int64_t pads = std::count(ids.begin(), ids.end(), int64_t(pad));
    if (items.size() != grids.size())
      fail("qwen2_vl: ", items.size(), " ", kind, " tensors but ", grids.size(), " ", kind, " grids");
    if (items.empty()) {
      if (pads) fail("qwen2_vl: the prompt has ", pads, " ", token, " tokens but no ", kind, " was given");
      return;
    }
    std::vector<float> px;
    int64_t rows = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const Tensor& t = items[i];
      const Grid& g = grids[i];
      if (t.ndim() != 2 || t.dim(1) != D || t.dim(0) != g[0] * g[1] * g[2])
        fail("qwen2_vl: ", kind, " ", i, " has pixel values of shape ", shape_str(t.shape()), " but its grid [", g[0],
             ", ", g[1], ", ", g[2], "] needs [", g[0] * g[1] * g[2], ", ", D, "]");
      std::vector<float> v = t.to_floats();
      px.insert(px.end(), v.begin(), v.end());
      rows += t.dim(0);
    }
    if (pads * unit != rows)
      fail("qwen2_vl: the prompt has ", pads, " ", token, " tokens but the ", kind, " inputs give ", rows / unit,
           " feature rows");
    auto t0 = std::chrono::steady_clock::now();
    std::vector<float> f = vision_.encode(px.data(), rows, grids, vtrace);
    if (vision_ms)
      *vision_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    int64_t next = 0;
    for (int64_t i = 0; i < L; ++i)
      if (ids[size_t(i)] == pad) std::copy_n(f.data() + (next++) * H, H, x.data() + i * H);
    if (features_out) *features_out = std::move(f);
  };
  scatter(input.images, input.image_grids, cfg_.image_token_id, "image", "<|image_pad|>",
          trace ? &trace->image : nullptr, trace ? &trace->image_features : nullptr);
  scatter(input.videos, input.video_grids, cfg_.video_token_id, "video", "<|video_pad|>",
          trace ? &trace->video : nullptr, trace ? &trace->video_features : nullptr);
  return x;
}

std::vector<float> Qwen2VLModel::run_decoder(std::vector<float>& x, int64_t n,
                                             const std::array<std::vector<int64_t>, 3>& positions, nn::KVCache& cache,
                                             int64_t logits_rows, Qwen2VLTrace* trace) const {
  const int64_t H = cfg_.hidden_size, hd = cfg_.head_dim, nh = cfg_.num_heads, nkv = cfg_.num_kv_heads;
  const int64_t I = cfg_.intermediate_size, past = cache.length();
  const float eps = cfg_.rms_norm_eps;
  nn::RopeTables rope = nn::mrope_tables(positions, inv_freq_, cfg_.mrope_section);
  std::vector<float> h(size_t(n * H)), q(size_t(n * nh * hd)), k(size_t(n * nkv * hd)), v(size_t(n * nkv * hd));
  std::vector<float> attn(size_t(n * nh * hd)), tmp(size_t(n * H)), gate(size_t(n * I)), up(size_t(n * I));
  AttentionMask mask;
  mask.causal = true;
  mask.q_offset = past;
  const float scale = 1.0f / std::sqrt(float(hd));
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    rms_norm(x.data(), l.input_norm.data(), n, H, eps, h.data());
    l.q.forward(h.data(), n, q.data());
    l.k.forward(h.data(), n, k.data());
    l.v.forward(h.data(), n, v.data());
    apply_rope(q.data(), n, nh * hd, int(nh), int(hd), rope.cos.data(), rope.sin.data());
    apply_rope(k.data(), n, nkv * hd, int(nkv), int(hd), rope.cos.data(), rope.sin.data());
    cache.append(int(li), k.data(), v.data(), n);
    attention(q.data(), nh * hd, cache.keys(int(li)), cache.values(int(li)), nkv * hd, n, past + n, int(nh), int(nkv),
              int(hd), scale, mask, attn.data());
    l.o.forward(attn.data(), n, tmp.data());
    add_inplace(x.data(), tmp.data(), n * H);
    rms_norm(x.data(), l.post_norm.data(), n, H, eps, h.data());
    l.gate.forward(h.data(), n, gate.data());
    l.up.forward(h.data(), n, up.data());
    silu_mul(gate.data(), up.data(), n * I);
    l.down.forward(gate.data(), n, tmp.data());
    add_inplace(x.data(), tmp.data(), n * H);
    if (trace) trace->layer_out.push_back(x);
  }
  cache.advance(n);
  rms_norm(x.data(), final_norm_.data(), n, H, eps, h.data());
  if (trace) trace->hidden = h;
  const int64_t rows = std::min(std::max<int64_t>(logits_rows, 0), n);
  std::vector<float> logits(size_t(rows * cfg_.vocab_size));
  if (rows) lm_head_.forward(h.data() + (n - rows) * H, rows, logits.data());
  x.swap(h);
  return logits;
}

Qwen2VLTrace Qwen2VLModel::forward(const ModelInput& input, int64_t logits_rows) const {
  if (input.ids.empty()) fail("qwen2_vl: forward needs at least one token");
  Qwen2VLTrace t;
  std::vector<float> x = embed(input, &t, nullptr);
  t.rope = qwen2vl_rope_index(input.ids, input.image_grids, input.video_grids, cfg_);
  nn::KVCache cache = make_cache(int64_t(input.ids.size()));
  t.logits = run_decoder(x, int64_t(input.ids.size()), t.rope.positions, cache, logits_rows, &t);
  return t;
}

std::unique_ptr<Model> make_qwen2_vl_model(const Checkpoint& checkpoint) {
  return Qwen2VLModel::load(checkpoint);
}

}  // namespace vlm
