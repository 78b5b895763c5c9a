// Gemma 3 (SigLIP vision tower + pooled projector + Gemma 3 decoder with sliding-window and global
// layers), faithful to Hugging Face transformers' Gemma3ForConditionalGeneration. Loads the HF
// layout (old and new key names) and mlx-vlm layouts (channels-last patch conv, MLX-quantized
// modules wherever .scales exists).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "models/decoder_model.h"
#include "models/siglip/siglip.h"
#include "nn/linear.h"
#include "text/tokenizer.h"

namespace vlm {

struct Gemma3TextConfig {
  int64_t hidden_size = 2304, intermediate_size = 9216, vocab_size = 262208;
  int num_layers = 26, num_heads = 8, num_kv_heads = 4, head_dim = 256;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 1e6, rope_local_base_freq = 1e4;
  double rope_linear_factor = 1.0;  // rope_scaling {"rope_type": "linear"} of the global layers
  double query_pre_attn_scalar = 256;
  int64_t sliding_window = 4096;
  std::vector<bool> sliding;  // per layer: true = sliding-window (local) attention
  int64_t max_position_embeddings = 131072;
  std::string hidden_act = "gelu_pytorch_tanh";
  float final_logit_softcapping = 0.f, attn_logit_softcapping = 0.f;  // 0 = none
  bool tie_word_embeddings = true;
};

struct Gemma3Config {
  SiglipVisionConfig vision;
  Gemma3TextConfig text;
  int64_t mm_tokens_per_image = 256;
  int32_t image_token_index = 262144, boi_token_index = 255999, eoi_token_index = 256000;
  // Missing keys take transformers' Gemma3Config / Gemma3TextConfig / SiglipVisionConfig defaults.
  static Gemma3Config from_json(const json& config, const std::string& where);
  nn::DecoderConfig decoder_config() const;
  int64_t tokens_per_side() const;  // sqrt(mm_tokens_per_image)
};

class Gemma3Model : public DecoderModel {
 public:
  explicit Gemma3Model(const Checkpoint& ckpt);
  const Gemma3Config& config() const { return cfg_; }
  // multi_modal_projector: SigLIP states [N, Dv] -> average pool to mm_tokens_per_image rows,
  // Gemma RMSNorm, @ mm_input_projection_weight -> [T, H]. Reports mm.pooled and mm.normed.
  std::vector<float> project(const Compute& env, const std::vector<float>& vision_out,
                             const nn::Observer* observer = nullptr) const;
  PromptRows build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                          const nn::Observer* observer, double* vision_ms) const override;
  void prepare(const Compute& env) override {
    DecoderModel::prepare(env);
    vision_.prepare(env);
    projection_.prepare(env);
  }

 private:
  Gemma3Config cfg_;
  SiglipEncoder vision_;
  nn::Norm soft_emb_norm_;
  MatMulWeight projection_;  // [H, Dv]: mm_input_projection_weight transposed
};

std::unique_ptr<Model> make_gemma3_model(const Checkpoint& checkpoint);
std::unique_ptr<Processor> make_gemma3_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                 const json& config);

}  // namespace vlm
