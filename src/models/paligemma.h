// PaliGemma 1 (SigLIP vision tower + linear projector + Gemma decoder), faithful to Hugging Face
// transformers' PaliGemmaForConditionalGeneration. Loads the HF layout (old and new key names)
// and mlx-vlm layouts (channels-last patch conv, MLX-quantized modules wherever .scales exists).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "models/model.h"
#include "nn/kv_cache.h"
#include "nn/linear.h"
#include "text/tokenizer.h"

namespace vlm {

struct SiglipVisionConfig {
  int64_t hidden_size = 768, intermediate_size = 3072;
  int num_layers = 12, num_heads = 12, num_channels = 3;
  int64_t image_size = 224, patch_size = 16;
  float layer_norm_eps = 1e-6f;
  std::string hidden_act = "gelu_pytorch_tanh";
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

struct GemmaTextConfig {
  int64_t hidden_size = 3072, intermediate_size = 24576, vocab_size = 256000;
  int num_layers = 28, num_heads = 16, num_kv_heads = 16, head_dim = 256;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 8192;
  std::string hidden_act = "gelu_pytorch_tanh";
  bool tie_word_embeddings = true;
};

struct PaliGemmaConfig {
  SiglipVisionConfig vision;
  GemmaTextConfig text;
  int64_t projection_dim = 2048;
  int64_t hidden_size = 2048;  // top-level; HF scales image features by its square root
  int32_t image_token_index = 256000;
  int32_t bos_token_id = 2;
  std::vector<int32_t> eos_token_ids = {1};
  // Missing keys take transformers' PaliGemmaConfig / SiglipVisionConfig / GemmaConfig defaults.
  static PaliGemmaConfig from_json(const json& config, const std::string& where);
};

// Intermediate tensors of one forward pass, for tests and debugging (row-major float32).
struct PaliGemmaTrace {
  std::vector<std::vector<float>> vision_hidden_states;  // embeddings, then each encoder layer [N, Dv]
  std::vector<float> vision_last_hidden_state;           // after post_layernorm [N, Dv]
  std::vector<float> image_features;                     // projector output, before 1/sqrt(H) [N, H]
  std::vector<float> inputs_embeds;                      // merged, before the sqrt(H) normaliser [L, H]
  std::vector<std::vector<float>> lm_hidden_states;      // decoder input, then each layer [L, H]
  std::vector<float> final_hidden;                       // after the final RMSNorm [L, H]
};

class PaliGemmaModel;

class PaliGemmaSequence : public Sequence {
 public:
  explicit PaliGemmaSequence(const PaliGemmaModel& model);
  std::vector<float> prefill(const ModelInput& input) override;
  std::vector<float> step(int32_t token) override;
  int64_t length() const override { return cache_.length(); }
  double vision_ms() const override { return vision_ms_; }

  // Prefill from stored pixel values (F32 [3,H,W] or [1,3,H,W]); fills `trace` when given.
  // Returns the final-norm hidden states of every prompt position [L, H].
  std::vector<float> prefill_hidden(const std::vector<int32_t>& ids, const std::vector<Tensor>& images,
                                    PaliGemmaTrace* trace = nullptr);
  // One decode step; returns the final-norm hidden state [H].
  std::vector<float> step_hidden(int32_t token);

 private:
  const PaliGemmaModel& model_;
  nn::KVCache cache_;
  int64_t prefix_ = 0;  // positions visible to every later token (bidirectional prompt block)
  double vision_ms_ = 0;
};

class PaliGemmaModel : public Model {
 public:
  explicit PaliGemmaModel(const Checkpoint& ckpt);
  const ModelInfo& info() const override { return info_; }
  std::unique_ptr<Sequence> start() const override;
  const PaliGemmaConfig& config() const { return cfg_; }

  // SigLIP tower on one image F32 [3,S,S] (or [1,3,S,S]); returns the post-LayerNorm states [N, Dv].
  std::vector<float> vision_tower(const Tensor& pixels, std::vector<std::vector<float>>* hidden_states = nullptr) const;
  // multi_modal_projector: [N, Dv] -> [N, H].
  std::vector<float> project(const std::vector<float>& vision_out) const;
  // Unscaled embedding rows for ids [n, H].
  std::vector<float> embed(const std::vector<int32_t>& ids) const;
  // Runs the decoder over n input rows (already multiplied by the normaliser), appending to `cache`.
  // `prefix` = positions every query may see (prefix-LM). Writes final-norm states [n, H].
  void decode(std::vector<float> x, int64_t n, nn::KVCache& cache, int64_t prefix, float* final_hidden,
              std::vector<std::vector<float>>* hidden_states = nullptr) const;
  // Tied (or separate) LM head: [rows, H] -> [rows, vocab].
  std::vector<float> logits(const float* final_hidden, int64_t rows) const;
  float embed_normalizer() const { return normalizer_; }
  nn::KVCache new_cache() const;

 private:
  struct VisionLayer {
    std::vector<float> ln1_w, ln1_b, ln2_w, ln2_b;
    nn::Linear q, k, v, o, fc1, fc2;
  };
  struct TextLayer {
    std::vector<float> in_norm, post_norm;
    nn::Linear q, k, v, o, gate, up, down;
  };
  void load_vision(const Checkpoint& ckpt, const std::string& prefix);
  void load_text(const Checkpoint& ckpt, const std::string& prefix, const std::string& head_path);

  PaliGemmaConfig cfg_;
  ModelInfo info_;
  // Vision.
  MatMulWeight patch_w_;  // [Dv, C*P*P] in the stored layout
  bool patch_channels_last_ = false;
  std::vector<float> patch_b_;
  std::vector<float> pos_emb_;  // [N, Dv], dequantized
  std::vector<VisionLayer> vlayers_;
  std::vector<float> post_ln_w_, post_ln_b_;
  nn::Linear projector_;
  // Text.
  nn::Embedding embed_tokens_;
  std::vector<TextLayer> tlayers_;
  std::vector<float> final_norm_;
  MatMulWeight lm_head_;  // defined only when untied
  float normalizer_ = 1.f;
  std::vector<float> inv_freq_;
};

std::unique_ptr<Model> make_paligemma_model(const Checkpoint& checkpoint);
std::unique_ptr<Processor> make_paligemma_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                    const json& config);

}  // namespace vlm
