#include "nn/decoder.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace vlm::nn {

const LayerAttention& DecoderConfig::layer(int i) const {
  static const LayerAttention kGlobal;
  return layers.empty() ? kGlobal : layers[size_t(i)];
}

void DecoderConfig::validate(const std::string& where) const {
  if (hidden <= 0 || intermediate <= 0 || vocab <= 0 || num_layers <= 0 || num_heads <= 0 || num_kv_heads <= 0 ||
      head_dim <= 0)
    fail(where,
         ": the text config needs positive hidden_size, intermediate_size, vocab_size, num_hidden_layers, "
         "num_attention_heads, num_key_value_heads and head_dim");
  if (num_heads % num_kv_heads != 0)
    fail(where, ": num_attention_heads ", num_heads, " is not a multiple of num_key_value_heads ", num_kv_heads);
  if (head_dim % 2 != 0) fail(where, ": head_dim ", head_dim, " must be even for rotary embeddings");
  if (ropes.empty()) fail(where, ": no rotary embedding configured");
  if (!layers.empty() && int(layers.size()) != num_layers)
    fail(where, ": ", layers.size(), " layer attention kinds for ", num_layers, " layers");
  for (const LayerAttention& l : layers) {
    if (l.rope < 0 || l.rope >= int(ropes.size())) fail(where, ": a layer names rotary table ", l.rope);
    if (l.window < 0) fail(where, ": negative sliding window ", l.window);
  }
  for (const RopeSpec& r : ropes) {
    if (!(r.theta > 0) || !(r.linear_factor > 0)) fail(where, ": rope theta and scaling factor must be positive");
    int total = 0;
    for (int s : r.mrope_section) total += s;
    if (!r.mrope_section.empty() && total * 2 != head_dim)
      fail(where, ": mrope_section sums to ", total, " but head_dim/2 is ", head_dim / 2);
  }
  if (attn_logit_softcap != 0.f) fail(where, ": attention logit soft-capping is not supported yet");
}

void Positions::append(const Positions& other, int64_t start, int64_t count) {
  for (size_t a = 0; a < 3; ++a)
    if (!other.axes[a].empty())
      axes[a].insert(axes[a].end(), other.axes[a].begin() + start, other.axes[a].begin() + start + count);
}

Positions Positions::sequential(int64_t first, int64_t count, bool three_axes) {
  Positions p;
  for (size_t a = 0; a < (three_axes ? 3u : 1u); ++a) {
    p.axes[a].resize(size_t(count));
    for (int64_t i = 0; i < count; ++i) p.axes[a][size_t(i)] = first + i;
  }
  return p;
}

TextDecoder TextDecoder::load(const Checkpoint& ckpt, const DecoderNames& names, const DecoderConfig& config) {
  config.validate(ckpt.dir() + "/config.json");
  TextDecoder d;
  d.cfg_ = config;
  const DecoderConfig& c = d.cfg_;
  const int64_t H = c.hidden, I = c.intermediate, qd = c.q_dim(), kvd = c.kv_dim();
  auto norm = [&](const std::string& path, int64_t dim) {
    return Norm::load(ckpt, path, dim, NormKind::kRms, c.norm_eps, c.norm_one_plus);
  };
  d.embed_ = Embedding::load(ckpt, names.model + "embed_tokens", c.vocab, H);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = names.model + "layers." + std::to_string(i) + ".";
    Layer l;
    l.input_norm = norm(p + "input_layernorm", H);
    if (c.sandwich_norms) {
      l.post_attn_norm = norm(p + "post_attention_layernorm", H);
      l.pre_ffn_norm = norm(p + "pre_feedforward_layernorm", H);
      l.post_ffn_norm = norm(p + "post_feedforward_layernorm", H);
    } else {
      l.pre_ffn_norm = norm(p + "post_attention_layernorm", H);  // Llama naming: the norm before the MLP
    }
    if (c.qk_norm) {
      l.q_norm = norm(p + "self_attn.q_norm", c.head_dim);
      l.k_norm = norm(p + "self_attn.k_norm", c.head_dim);
    }
    l.q = Linear::load(ckpt, p + "self_attn.q_proj", H, qd, c.qkv_bias);
    l.k = Linear::load(ckpt, p + "self_attn.k_proj", H, kvd, c.qkv_bias);
    l.v = Linear::load(ckpt, p + "self_attn.v_proj", H, kvd, c.qkv_bias);
    l.o = Linear::load(ckpt, p + "self_attn.o_proj", qd, H, false);
    l.gate = Linear::load(ckpt, p + "mlp.gate_proj", H, I, false);
    l.up = Linear::load(ckpt, p + "mlp.up_proj", H, I, false);
    l.down = Linear::load(ckpt, p + "mlp.down_proj", I, H, false);
    d.layers_.push_back(std::move(l));
  }
  if (ckpt.has(names.model + "layers." + std::to_string(c.num_layers) + ".input_layernorm.weight"))
    fail(ckpt.dir(), ": checkpoint has more decoder layers than num_hidden_layers = ", c.num_layers);
  d.final_norm_ = norm(names.model + "norm", H);
  if (c.tie_embeddings || names.lm_head.empty()) {
    d.tied_head_ = true;
    d.lm_head_ = d.embed_.as_matmul();
  } else {
    if (!ckpt.has(names.lm_head + ".weight"))
      fail(ckpt.dir(), ": tie_word_embeddings is false but there is no '", names.lm_head, ".weight'");
    d.lm_head_ = load_matmul_weight(ckpt, names.lm_head, c.vocab, H);
  }
  for (const RopeSpec& r : c.ropes) {
    std::vector<float> inv = rope_inv_freq(c.head_dim, r.theta);
    if (r.linear_factor != 1.0)
      for (float& f : inv) f = float(f / r.linear_factor);  // transformers' "linear" rope_type
    d.inv_freq_.push_back(std::move(inv));
  }
  return d;
}

void TextDecoder::embed(const int32_t* ids, int64_t n, float* out) const {
  std::vector<int64_t> wide(ids, ids + n);
  embed_.lookup(wide.data(), n, out);
}

void TextDecoder::prepare(const Compute& env) {
  for (Layer& l : layers_)
    for (Linear* m : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) m->prepare(env);
  embed_.prepare(env);
  if (tied_head_)
    lm_head_ = embed_.as_matmul();  // one repacked table serves lookups and the head
  else
    lm_head_.prepare(env);
}

KVCache TextDecoder::make_cache(int64_t capacity) const {
  KVCache cache(cfg_.num_layers, cfg_.num_kv_heads, cfg_.head_dim, capacity);
  for (int i = 0; i < cfg_.num_layers; ++i)
    if (cfg_.layer(i).window > 0) cache.set_layer_window(i, cfg_.layer(i).window);
  return cache;
}

void TextDecoder::forward(const Compute& env, float* x, std::span<const DecoderSpan> spans, const Positions& positions,
                          DecoderWorkspace& ws, const Observer* observer) const {
  int64_t n = 0;
  for (const DecoderSpan& s : spans) n += s.rows;
  if (positions.size() != n) fail("decoder: ", positions.size(), " positions for ", n, " rows");
  ws.rope.resize(cfg_.ropes.size());
  for (size_t r = 0; r < cfg_.ropes.size(); ++r) {
    const RopeSpec& spec = cfg_.ropes[r];
    if (spec.mrope_section.empty()) {
      ws.rope[r] = rope_tables(positions.axes[0], inv_freq_[r]);
    } else {
      if (positions.axes[1].size() != size_t(n) || positions.axes[2].size() != size_t(n))
        fail("decoder: multimodal RoPE needs three position axes");
      ws.rope[r] = mrope_tables(positions.axes, inv_freq_[r], spec.mrope_section);
    }
  }
  observe(observer, "decoder.embeddings", -1, x, n, cfg_.hidden);
  for (size_t i = 0; i < layers_.size(); ++i) {
    attention_block(env, layers_[i], int(i), x, spans, n, ws);
    mlp_block(env, layers_[i], int(i), x, spans, n, ws);
    observe(observer, "decoder.layer", int(i), x, n, cfg_.hidden);
  }
  for (const DecoderSpan& s : spans) s.cache->advance(s.rows);
}

void TextDecoder::attention_block(const Compute& env, const Layer& l, int index, float* x,
                                  std::span<const DecoderSpan> spans, int64_t n, DecoderWorkspace& ws) const {
  const int64_t H = cfg_.hidden, hd = cfg_.head_dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim();
  const int nh = cfg_.num_heads, nkv = cfg_.num_kv_heads;
  float* h = ws.normed.get(n * H);
  float* q = ws.q.get(n * qd);
  float* k = ws.k.get(n * kvd);
  float* v = ws.v.get(n * kvd);
  float* att = ws.attn.get(n * qd);
  float* tmp = ws.tmp.get(n * H);
  l.input_norm.apply(env, x, n, h);
  linear(env, l.q, index, kLoraQ, spans, h, n, q, ws);
  linear(env, l.k, index, kLoraK, spans, h, n, k, ws);
  linear(env, l.v, index, kLoraV, spans, h, n, v, ws);
  if (cfg_.qk_norm) {  // per head: rows of head_dim
    l.q_norm.apply(env, q, n * nh, q);
    l.k_norm.apply(env, k, n * nkv, k);
  }
  const LayerAttention& kind = cfg_.layer(index);
  const RopeTables& rope = ws.rope[size_t(kind.rope)];
  apply_rope(q, n, qd, nh, int(hd), rope.cos.data(), rope.sin.data());
  apply_rope(k, n, kvd, nkv, int(hd), rope.cos.data(), rope.sin.data());
  const float scale = cfg_.query_scale > 0 ? cfg_.query_scale : 1.0f / std::sqrt(float(hd));
  int64_t row = 0;
  for (const DecoderSpan& s : spans) {
    KVCache& cache = *s.cache;
    cache.append(index, k + row * kvd, v + row * kvd, s.rows);
    // Key coordinates start at the layer's first stored row (a sliding layer drops older ones).
    const int64_t past = cache.length() - cache.first_row(index);
    AttentionMask mask;
    mask.causal = true;
    mask.q_offset = past;
    mask.prefix = std::max<int64_t>(0, s.prefix - cache.first_row(index));
    mask.window = kind.window;
    for (const auto& b : s.blocks) mask.blocks.push_back({past + b[0], past + b[1]});
    attention(env, q + row * qd, qd, cache.keys(index), cache.values(index), kvd, s.rows, past + s.rows, nh, nkv,
              int(hd), scale, mask, att + row * qd);
    row += s.rows;
  }
  linear(env, l.o, index, kLoraO, spans, att, n, tmp, ws);
  if (l.post_attn_norm.defined()) l.post_attn_norm.apply(env, tmp, n, tmp);
  add_inplace(x, tmp, n * H);
}

void TextDecoder::linear(const Compute& env, const Linear& m, int layer, int slot, std::span<const DecoderSpan> spans,
                         const float* x, int64_t n, float* y, DecoderWorkspace& ws) const {
  m.forward(env, x, n, y);
  int64_t row = 0;
  for (const DecoderSpan& s : spans) {
    if (s.lora && !s.lora->empty())
      lora_add(env, *s.lora, layer, slot, x + row * m.in_features(), s.rows, y + row * m.out_features(), ws.lora);
    row += s.rows;
  }
}

void TextDecoder::mlp_block(const Compute& env, const Layer& l, int index, float* x, std::span<const DecoderSpan> spans,
                            int64_t n, DecoderWorkspace& ws) const {
  const int64_t H = cfg_.hidden, I = cfg_.intermediate;
  float* h = ws.normed.get(n * H);
  float* gate = ws.gate.get(n * I);
  float* up = ws.up.get(n * I);
  float* tmp = ws.tmp.get(n * H);
  l.pre_ffn_norm.apply(env, x, n, h);
  linear(env, l.gate, index, kLoraGate, spans, h, n, gate, ws);
  linear(env, l.up, index, kLoraUp, spans, h, n, up, ws);
  activate_mul(env, cfg_.mlp_activation, gate, up, n * I);
  linear(env, l.down, index, kLoraDown, spans, gate, n, tmp, ws);
  if (l.post_ffn_norm.defined()) l.post_ffn_norm.apply(env, tmp, n, tmp);
  add_inplace(x, tmp, n * H);
}

void TextDecoder::head(const Compute& env, const float* x, int64_t rows, float* hidden, float* logits) const {
  final_norm_.apply(env, x, rows, hidden);
  if (!logits) return;
  lm_head_.forward(env, hidden, rows, logits);
  if (cfg_.final_logit_softcap > 0) {
    const float c = cfg_.final_logit_softcap;
    for (int64_t i = 0; i < rows * cfg_.vocab; ++i) logits[i] = c * std::tanh(logits[i] / c);
  }
}

}  // namespace vlm::nn
