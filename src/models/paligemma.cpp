// PaliGemma weights, SigLIP tower, projector, Gemma decoder and the generation sequence.
#include "models/paligemma.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "kernels/ops.h"
#include "nn/rope.h"

namespace vlm {

namespace {

void gelu(const std::string& act, float* x, int64_t n) {
  if (act == "gelu")
    gelu_erf(x, n);
  else
    gelu_tanh(x, n);
}

// The first prefix under which `probe` exists, or "" when none does.
std::string find_prefix(const Checkpoint& ckpt, const std::vector<std::string>& prefixes, const std::string& probe) {
  for (auto& p : prefixes)
    if (ckpt.has(p + probe)) return p;
  return "";
}

// HF multiplies the embeddings by sqrt(hidden) as a tensor of the activation dtype, so the
// factor itself is rounded to bf16/f16 for such checkpoints (2048 -> 45.25, not 45.2548).
float round_to(DType dtype, float v) {
  if (dtype == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  if (dtype == DType::F16) return f16_to_f32(f32_to_f16(v));
  return v;
}

int64_t count_parameters(const Checkpoint& ckpt) {
  int64_t total = 0;
  for (auto& name : ckpt.names()) {
    auto ends = [&](const std::string& s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    std::string module = name.substr(0, name.rfind('.'));
    bool quantized = ckpt.has(module + ".scales");
    if (quantized && (ends(".scales") || ends(".biases"))) continue;
    Tensor t = ckpt.get(name);
    int64_t n = t.numel();
    if (quantized && t.dtype() == DType::U32) {
      auto spec = ckpt.quantization().for_module(module);
      if (spec) n = n * 32 / spec->bits;
    }
    total += n;
  }
  return total;
}

}  // namespace

PaliGemmaModel::PaliGemmaModel(const Checkpoint& ckpt) {
  const std::string where = ckpt.dir() + "/config.json";
  cfg_ = PaliGemmaConfig::from_json(ckpt.config(), where);

  std::string vision =
      find_prefix(ckpt, {"vision_tower.vision_model.", "model.vision_tower.vision_model."}, "post_layernorm.weight");
  if (vision.empty()) fail(ckpt.dir(), ": no SigLIP vision tower (missing 'vision_tower.vision_model.post_layernorm')");
  std::string text = find_prefix(ckpt, {"language_model.model.", "model.language_model."}, "embed_tokens.weight");
  if (text.empty()) fail(ckpt.dir(), ": no Gemma decoder (missing 'language_model.model.embed_tokens.weight')");
  std::string proj = find_prefix(ckpt, {"", "model."}, "multi_modal_projector.linear.weight");
  std::string head = find_prefix(ckpt, {"", "language_model."}, "lm_head.weight");

  load_vision(ckpt, vision);
  projector_ =
      nn::Linear::load(ckpt, proj + "multi_modal_projector.linear", cfg_.vision.hidden_size, cfg_.projection_dim, true);
  load_text(ckpt, text, cfg_.text.tie_word_embeddings ? "" : head + "lm_head");

  info_.model_type = "paligemma";
  info_.vocab_size = cfg_.text.vocab_size;
  info_.context_length = cfg_.text.max_position_embeddings;
  info_.eos_ids = cfg_.eos_token_ids;
  auto gen = std::filesystem::path(ckpt.dir()) / "generation_config.json";
  if (std::filesystem::exists(gen)) {
    json g = read_json_file(gen.string());
    auto it = g.find("eos_token_id");
    if (it != g.end() && it->is_number_integer()) info_.eos_ids = {it->get<int32_t>()};
    if (it != g.end() && it->is_array()) {
      info_.eos_ids.clear();
      for (auto& v : *it)
        if (v.is_number_integer()) info_.eos_ids.push_back(v.get<int32_t>());
    }
  }
  info_.num_parameters = count_parameters(ckpt);
}

void PaliGemmaModel::load_vision(const Checkpoint& ckpt, const std::string& p) {
  const auto& v = cfg_.vision;
  const int64_t D = v.hidden_size, P = v.patch_size, C = v.num_channels;
  const std::string conv = p + "embeddings.patch_embedding.weight";
  Tensor w = ckpt.get(conv);
  // HF stores the conv OIHW; mlx-vlm's sanitize writes it channels-last (OHWI).
  Shape oihw = {D, C, P, P}, ohwi = {D, P, P, C};
  if (w.shape() == oihw && (w.shape() != ohwi || !ckpt.quantization().present())) {
    patch_channels_last_ = false;
  } else if (w.shape() == ohwi) {
    patch_channels_last_ = true;
  } else {
    fail(ckpt.file_of(conv), ": tensor '", conv, "' has shape ", shape_str(w.shape()), " but the config implies ",
         shape_str(oihw), " (or channels-last ", shape_str(ohwi), ")");
  }
  patch_w_ = MatMulWeight::dense(w.contiguous().reshape({D, C * P * P}), ckpt.file_of(conv) + ": '" + conv + "'");
  patch_b_ = nn::load_vector(ckpt, p + "embeddings.patch_embedding.bias", D);

  const int64_t N = v.num_patches();
  auto pos = nn::Embedding::load(ckpt, p + "embeddings.position_embedding", N, D);
  pos_emb_.resize(size_t(N * D));
  std::vector<int64_t> ids(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) ids[size_t(i)] = i;
  pos.lookup(ids.data(), N, pos_emb_.data());

  for (int l = 0; l < v.num_layers; ++l) {
    std::string lp = p + "encoder.layers." + std::to_string(l) + ".";
    VisionLayer L;
    L.ln1_w = nn::load_vector(ckpt, lp + "layer_norm1.weight", D);
    L.ln1_b = nn::load_vector(ckpt, lp + "layer_norm1.bias", D);
    L.ln2_w = nn::load_vector(ckpt, lp + "layer_norm2.weight", D);
    L.ln2_b = nn::load_vector(ckpt, lp + "layer_norm2.bias", D);
    L.q = nn::Linear::load(ckpt, lp + "self_attn.q_proj", D, D, true);
    L.k = nn::Linear::load(ckpt, lp + "self_attn.k_proj", D, D, true);
    L.v = nn::Linear::load(ckpt, lp + "self_attn.v_proj", D, D, true);
    L.o = nn::Linear::load(ckpt, lp + "self_attn.out_proj", D, D, true);
    L.fc1 = nn::Linear::load(ckpt, lp + "mlp.fc1", D, v.intermediate_size, true);
    L.fc2 = nn::Linear::load(ckpt, lp + "mlp.fc2", v.intermediate_size, D, true);
    vlayers_.push_back(std::move(L));
  }
  post_ln_w_ = nn::load_vector(ckpt, p + "post_layernorm.weight", D);
  post_ln_b_ = nn::load_vector(ckpt, p + "post_layernorm.bias", D);
}

void PaliGemmaModel::load_text(const Checkpoint& ckpt, const std::string& p, const std::string& head_path) {
  const auto& t = cfg_.text;
  const int64_t H = t.hidden_size, I = t.intermediate_size;
  const int64_t qd = int64_t(t.num_heads) * t.head_dim, kvd = int64_t(t.num_kv_heads) * t.head_dim;
  embed_tokens_ = nn::Embedding::load(ckpt, p + "embed_tokens", t.vocab_size, H);
  for (int l = 0; l < t.num_layers; ++l) {
    std::string lp = p + "layers." + std::to_string(l) + ".";
    TextLayer L;
    L.in_norm = nn::load_vector(ckpt, lp + "input_layernorm.weight", H);
    L.post_norm = nn::load_vector(ckpt, lp + "post_attention_layernorm.weight", H);
    L.q = nn::Linear::load(ckpt, lp + "self_attn.q_proj", H, qd, false);
    L.k = nn::Linear::load(ckpt, lp + "self_attn.k_proj", H, kvd, false);
    L.v = nn::Linear::load(ckpt, lp + "self_attn.v_proj", H, kvd, false);
    L.o = nn::Linear::load(ckpt, lp + "self_attn.o_proj", qd, H, false);
    L.gate = nn::Linear::load(ckpt, lp + "mlp.gate_proj", H, I, false);
    L.up = nn::Linear::load(ckpt, lp + "mlp.up_proj", H, I, false);
    L.down = nn::Linear::load(ckpt, lp + "mlp.down_proj", I, H, false);
    tlayers_.push_back(std::move(L));
  }
  final_norm_ = nn::load_vector(ckpt, p + "norm.weight", H);
  if (!head_path.empty()) {
    if (!ckpt.has(head_path + ".weight"))
      fail(ckpt.dir(), ": tie_word_embeddings is false but there is no 'lm_head.weight'");
    lm_head_ = nn::load_matmul_weight(ckpt, head_path, t.vocab_size, H);
  }
  const std::string emb = p + "embed_tokens";
  DType model_dtype = ckpt.has(emb + ".scales") ? ckpt.get(emb + ".scales").dtype() : ckpt.get(emb + ".weight").dtype();
  normalizer_ = round_to(model_dtype, std::sqrt(float(H)));
  inv_freq_ = nn::rope_inv_freq(t.head_dim, t.rope_theta);
}

std::vector<float> PaliGemmaModel::vision_tower(const Tensor& pixels,
                                                std::vector<std::vector<float>>* hidden_states) const {
  const auto& v = cfg_.vision;
  const int64_t S = v.image_size, P = v.patch_size, C = v.num_channels, D = v.hidden_size;
  const int64_t G = S / P, N = G * G, K = C * P * P;
  Shape want = {C, S, S}, want4 = {1, C, S, S};
  if (pixels.shape() != want && pixels.shape() != want4)
    fail("paligemma: pixel values have shape ", shape_str(pixels.shape()), " but the vision tower expects ",
         shape_str(want), " (vision_config.image_size ", S, ")");
  Tensor px = pixels.dtype() == DType::F32 ? pixels.contiguous() : pixels.to(DType::F32);
  const float* src = px.data<float>();

  // Conv with kernel = stride = patch is a matmul over flattened patches in the weight's layout.
  std::vector<float> patches(size_t(N * K));
  for (int64_t gy = 0; gy < G; ++gy)
    for (int64_t gx = 0; gx < G; ++gx) {
      float* dst = patches.data() + (gy * G + gx) * K;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < P; ++y)
          for (int64_t x = 0; x < P; ++x) {
            float val = src[(c * S + gy * P + y) * S + gx * P + x];
            int64_t idx = patch_channels_last_ ? (y * P + x) * C + c : (c * P + y) * P + x;
            dst[idx] = val;
          }
    }
  std::vector<float> h(size_t(N * D));
  patch_w_.forward(patches.data(), N, h.data(), patch_b_.data());
  add_inplace(h.data(), pos_emb_.data(), N * D);
  if (hidden_states) hidden_states->push_back(h);

  const int heads = v.num_heads, hd = int(D / heads);
  const float scale = 1.0f / std::sqrt(float(hd));
  std::vector<float> xn(h.size()), q(h.size()), k(h.size()), vv(h.size()), att(h.size()), o(h.size());
  std::vector<float> mid(size_t(N * v.intermediate_size));
  AttentionMask full;
  full.causal = false;
  for (auto& L : vlayers_) {
    layer_norm(h.data(), L.ln1_w.data(), L.ln1_b.data(), N, D, v.layer_norm_eps, xn.data());
    L.q.forward(xn.data(), N, q.data());
    L.k.forward(xn.data(), N, k.data());
    L.v.forward(xn.data(), N, vv.data());
    attention(q.data(), D, k.data(), vv.data(), D, N, N, heads, heads, hd, scale, full, att.data());
    L.o.forward(att.data(), N, o.data());
    add_inplace(h.data(), o.data(), N * D);
    layer_norm(h.data(), L.ln2_w.data(), L.ln2_b.data(), N, D, v.layer_norm_eps, xn.data());
    L.fc1.forward(xn.data(), N, mid.data());
    gelu(v.hidden_act, mid.data(), int64_t(mid.size()));
    L.fc2.forward(mid.data(), N, o.data());
    add_inplace(h.data(), o.data(), N * D);
    if (hidden_states) hidden_states->push_back(h);
  }
  std::vector<float> out(h.size());
  layer_norm(h.data(), post_ln_w_.data(), post_ln_b_.data(), N, D, v.layer_norm_eps, out.data());
  return out;
}

std::vector<float> PaliGemmaModel::project(const std::vector<float>& vision_out) const {
  int64_t n = int64_t(vision_out.size()) / cfg_.vision.hidden_size;
  return projector_.forward(vision_out, n);
}

std::vector<float> PaliGemmaModel::embed(const std::vector<int32_t>& ids) const {
  std::vector<int64_t> wide(ids.begin(), ids.end());
  std::vector<float> out(ids.size() * size_t(cfg_.text.hidden_size));
  embed_tokens_.lookup(wide.data(), int64_t(wide.size()), out.data());
  return out;
}

nn::KVCache PaliGemmaModel::new_cache() const {
  return nn::KVCache(cfg_.text.num_layers, cfg_.text.num_kv_heads, cfg_.text.head_dim);
}

void PaliGemmaModel::decode(std::vector<float> x, int64_t n, nn::KVCache& cache, int64_t prefix, float* final_hidden,
                            std::vector<std::vector<float>>* hidden_states) const {
  const auto& t = cfg_.text;
  const int64_t H = t.hidden_size, I = t.intermediate_size, start = cache.length();
  const int nh = t.num_heads, kvh = t.num_kv_heads, hd = t.head_dim;
  const int64_t qd = int64_t(nh) * hd, kvd = int64_t(kvh) * hd;
  if (start + n > t.max_position_embeddings)
    fail("paligemma: sequence of ", start + n, " tokens exceeds max_position_embeddings ", t.max_position_embeddings);
  if (hidden_states) hidden_states->push_back(x);

  // HF PaliGemma numbers positions from 1 (position_ids = cumsum(attention_mask)).
  std::vector<int64_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = start + i + 1;
  nn::RopeTables rope = nn::rope_tables(pos, inv_freq_);
  AttentionMask mask;
  mask.causal = true;
  mask.q_offset = start;
  mask.prefix = prefix;
  const float scale = 1.0f / std::sqrt(float(hd));

  std::vector<float> xn(size_t(n * H)), q(size_t(n * qd)), k(size_t(n * kvd)), v(size_t(n * kvd));
  std::vector<float> att(size_t(n * qd)), o(size_t(n * H)), gate(size_t(n * I)), up(size_t(n * I));
  for (int l = 0; l < t.num_layers; ++l) {
    const auto& L = tlayers_[size_t(l)];
    rms_norm(x.data(), L.in_norm.data(), n, H, t.rms_norm_eps, xn.data(), true);
    L.q.forward(xn.data(), n, q.data());
    L.k.forward(xn.data(), n, k.data());
    L.v.forward(xn.data(), n, v.data());
    apply_rope(q.data(), n, qd, nh, hd, rope.cos.data(), rope.sin.data());
    apply_rope(k.data(), n, kvd, kvh, hd, rope.cos.data(), rope.sin.data());
    cache.append(l, k.data(), v.data(), n);
    attention(q.data(), qd, cache.keys(l), cache.values(l), kvd, n, start + n, nh, kvh, hd, scale, mask, att.data());
    L.o.forward(att.data(), n, o.data());
    add_inplace(x.data(), o.data(), n * H);
    rms_norm(x.data(), L.post_norm.data(), n, H, t.rms_norm_eps, xn.data(), true);
    L.gate.forward(xn.data(), n, gate.data());
    L.up.forward(xn.data(), n, up.data());
    if (t.hidden_act == "gelu") {
      gelu_erf(gate.data(), n * I);
      for (int64_t i = 0; i < n * I; ++i) gate[size_t(i)] *= up[size_t(i)];
    } else {
      gelu_tanh_mul(gate.data(), up.data(), n * I);
    }
    L.down.forward(gate.data(), n, o.data());
    add_inplace(x.data(), o.data(), n * H);
    if (hidden_states) hidden_states->push_back(x);
  }
  cache.advance(n);
  rms_norm(x.data(), final_norm_.data(), n, H, t.rms_norm_eps, final_hidden, true);
}

std::vector<float> PaliGemmaModel::logits(const float* final_hidden, int64_t rows) const {
  const MatMulWeight& head = lm_head_.defined() ? lm_head_ : embed_tokens_.as_matmul();
  std::vector<float> out(size_t(rows * head.rows()));
  head.forward(final_hidden, rows, out.data());
  return out;
}

std::unique_ptr<Sequence> PaliGemmaModel::start() const {
  return std::make_unique<PaliGemmaSequence>(*this);
}

PaliGemmaSequence::PaliGemmaSequence(const PaliGemmaModel& model) : model_(model), cache_(model.new_cache()) {}

std::vector<float> PaliGemmaSequence::prefill_hidden(const std::vector<int32_t>& ids, const std::vector<Tensor>& images,
                                                     PaliGemmaTrace* trace) {
  const auto& cfg = model_.config();
  const int64_t H = cfg.text.hidden_size, N = cfg.vision.num_patches(), L = int64_t(ids.size());
  if (ids.empty()) fail("paligemma: empty prompt");
  int64_t image_tokens = 0;
  for (int32_t id : ids) image_tokens += id == cfg.image_token_index;
  if (image_tokens != N * int64_t(images.size()))
    fail("paligemma: the prompt has ", image_tokens, " <image> tokens (id ", cfg.image_token_index, ") but ",
         images.size(), " image(s) of ", N, " tokens each were given");

  std::vector<float> x = model_.embed(ids);
  if (!images.empty()) {
    auto t0 = std::chrono::steady_clock::now();
    // transformers divides the projector output by sqrt(text hidden) before merging.
    const float inv = 1.0f / std::sqrt(float(H));
    int64_t row = 0;
    for (const Tensor& img : images) {
      std::vector<std::vector<float>>* hs = trace ? &trace->vision_hidden_states : nullptr;
      std::vector<float> vis = model_.vision_tower(img, hs);
      std::vector<float> feat = model_.project(vis);
      if (trace) {
        trace->vision_last_hidden_state = vis;
        trace->image_features = feat;
      }
      for (int64_t j = 0; j < N; ++j) {
        while (ids[size_t(row)] != cfg.image_token_index) ++row;
        for (int64_t c = 0; c < H; ++c) x[size_t(row * H + c)] = feat[size_t(j * H + c)] * inv;
        ++row;
      }
    }
    vision_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  if (trace) trace->inputs_embeds = x;
  scale_inplace(x.data(), model_.embed_normalizer(), L * H);
  // The whole prompt (image, <bos>, text, "\n") attends bidirectionally.
  prefix_ = cache_.length() + L;
  std::vector<float> out(size_t(L * H));
  model_.decode(std::move(x), L, cache_, prefix_, out.data(), trace ? &trace->lm_hidden_states : nullptr);
  if (trace) trace->final_hidden = out;
  return out;
}

std::vector<float> PaliGemmaSequence::prefill(const ModelInput& input) {
  if (!input.videos.empty()) fail("paligemma: video input is not supported");
  std::vector<float> h = prefill_hidden(input.ids, input.images);
  const int64_t H = model_.config().text.hidden_size;
  return model_.logits(h.data() + h.size() - size_t(H), 1);
}

std::vector<float> PaliGemmaSequence::step_hidden(int32_t token) {
  if (cache_.length() == 0) fail("paligemma: step() before prefill()");
  std::vector<float> x = model_.embed({token});
  const int64_t H = model_.config().text.hidden_size;
  scale_inplace(x.data(), model_.embed_normalizer(), H);
  std::vector<float> out(static_cast<size_t>(H));
  model_.decode(std::move(x), 1, cache_, prefix_, out.data());
  return out;
}

std::vector<float> PaliGemmaSequence::step(int32_t token) {
  std::vector<float> h = step_hidden(token);
  return model_.logits(h.data(), 1);
}

std::unique_ptr<Model> make_paligemma_model(const Checkpoint& checkpoint) {
  return std::make_unique<PaliGemmaModel>(checkpoint);
}

}  // namespace vlm
