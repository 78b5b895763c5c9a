// The text decoder every family shares: token embedding, a stack of pre-norm transformer layers
// described by data (DecoderConfig), final norm and LM head. Families differ only in
// configuration, in the positions they supply and in how they merge vision features.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "kernels/ops.h"
#include "nn/kv_cache.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "nn/lora.h"
#include "nn/rope.h"

namespace vlm::nn {

// One rotary embedding: theta, optional linear scaling (positions / factor) and, for Qwen2-VL's
// multimodal RoPE, the head-dimension sections taken by the T, H, W position axes.
struct RopeSpec {
  double theta = 10000.0;
  double linear_factor = 1.0;
  std::vector<int> mrope_section;  // empty: 1-D rotary from position axis 0
};

// Per-layer attention: which RopeSpec it uses and its sliding window (0 = global).
struct LayerAttention {
  int rope = 0;
  int64_t window = 0;
};

struct DecoderConfig {
  int64_t hidden = 0, intermediate = 0, vocab = 0, max_positions = 0;
  int num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float norm_eps = 1e-6f;
  bool norm_one_plus = false;  // Gemma: norms scale by (1 + w)
  Activation mlp_activation = Activation::kSilu;
  bool qkv_bias = false;        // Qwen2: q/k/v projections carry a bias
  bool qk_norm = false;         // per-head RMSNorm of q and k before RoPE (Gemma 3, Qwen3)
  bool sandwich_norms = false;  // post-attention and pre/post-feedforward norms (Gemma 2/3)
  float query_scale = 0.f;      // softmax scale; 0 = 1/sqrt(head_dim)
  float attn_logit_softcap = 0.f, final_logit_softcap = 0.f;  // 0 = none
  bool tie_embeddings = false;
  std::vector<RopeSpec> ropes = {RopeSpec{}};
  std::vector<LayerAttention> layers;  // empty: every layer global with ropes[0]

  const LayerAttention& layer(int i) const;
  int64_t q_dim() const { return int64_t(num_heads) * head_dim; }
  int64_t kv_dim() const { return int64_t(num_kv_heads) * head_dim; }
  // Throws naming `where` when sizes are missing or inconsistent.
  void validate(const std::string& where) const;
};

// Where a checkpoint keeps the decoder: "<model>embed_tokens", "<model>layers.N.", "<model>norm",
// and the LM head module when untied (empty: tied).
struct DecoderNames {
  std::string model;
  std::string lm_head;
};

// Positions of a run of rows: axis 0 for 1-D RoPE, axes 0..2 (T, H, W) for multimodal RoPE.
struct Positions {
  std::array<std::vector<int64_t>, 3> axes;
  int64_t size() const { return int64_t(axes[0].size()); }
  void append(const Positions& other, int64_t start, int64_t count);
  static Positions sequential(int64_t first, int64_t count, bool three_axes);
};

// Consecutive rows of one sequence inside a forward pass (a batch holds several).
struct DecoderSpan {
  int64_t rows = 0;
  KVCache* cache = nullptr;
  int64_t prefix = 0;  // cache rows visible to every query of this sequence (prefix-LM)
  // Bidirectional blocks among these rows ([start, end), relative to the span's first row): a
  // row inside one sees the whole block in every layer (Gemma 3's image tokens).
  std::vector<std::array<int64_t, 2>> blocks;
  const LoraSet* lora = nullptr;  // adapters of this sequence (null or empty: the base model)
};

// Reused buffers of a forward pass: sized on first use, so steady decoding allocates nothing.
struct DecoderWorkspace {
  Buffer normed, q, k, v, attn, tmp, gate, up, qk_norm;
  std::vector<RopeTables> rope;
  LoraWorkspace lora;
};

class TextDecoder {
 public:
  static TextDecoder load(const Checkpoint& ckpt, const DecoderNames& names, const DecoderConfig& config);
  const DecoderConfig& config() const { return cfg_; }
  const Embedding& embedding() const { return embed_; }

  // Unscaled embedding rows of `ids` into out[n, hidden].
  void embed(const int32_t* ids, int64_t n, float* out) const;
  // Runs x[n, hidden] (n = Σ span rows, spans in row order) through every layer, appending each
  // span's keys/values to its cache (and advancing it). On return x holds the residual stream of
  // the last layer.
  void forward(const Compute& env, float* x, std::span<const DecoderSpan> spans, const Positions& positions,
               DecoderWorkspace& ws, const Observer* observer = nullptr) const;
  // Final norm of `rows` rows of x into `hidden` and, when `logits` is given, LM-head logits.
  void head(const Compute& env, const float* x, int64_t rows, float* hidden, float* logits) const;
  KVCache make_cache(int64_t capacity = 256) const;
  // Repacks every matmul weight for env's precision (once, at load; see MatMulWeight::prepare).
  void prepare(const Compute& env);

 private:
  struct Layer {
    Norm input_norm, post_attn_norm, pre_ffn_norm, post_ffn_norm, q_norm, k_norm;
    Linear q, k, v, o, gate, up, down;
  };
  void attention_block(const Compute& env, const Layer& l, int index, float* x, std::span<const DecoderSpan> spans,
                       int64_t n, DecoderWorkspace& ws) const;
  void mlp_block(const Compute& env, const Layer& l, int index, float* x, std::span<const DecoderSpan> spans, int64_t n,
                 DecoderWorkspace& ws) const;
  // m.forward(x) into y, plus each span's LoRA update of (layer, slot) on its own rows.
  void linear(const Compute& env, const Linear& m, int layer, int slot, std::span<const DecoderSpan> spans,
              const float* x, int64_t n, float* y, DecoderWorkspace& ws) const;

  DecoderConfig cfg_;
  Embedding embed_;
  std::vector<Layer> layers_;
  Norm final_norm_;
  MatMulWeight lm_head_;  // the embedding table when tied
  bool tied_head_ = false;
  std::vector<std::vector<float>> inv_freq_;  // per RopeSpec
};

}  // namespace vlm::nn
