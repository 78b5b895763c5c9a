// PaliGemma 1 (SigLIP vision tower + linear projector + Gemma decoder), faithful to Hugging Face
// transformers' PaliGemmaForConditionalGeneration. Loads the HF layout (old and new key names)
// and mlx-vlm layouts (channels-last patch conv, MLX-quantized modules wherever .scales exists).
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
  nn::DecoderConfig decoder_config() const;
};

class PaliGemmaModel : public DecoderModel {
 public:
  explicit PaliGemmaModel(const Checkpoint& ckpt);
  const PaliGemmaConfig& config() const { return cfg_; }
  const SiglipEncoder& vision() const { return vision_; }
  // multi_modal_projector: [N, Dv] -> [N, H].
  std::vector<float> project(const Compute& env, const std::vector<float>& vision_out) const;
  PromptRows build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                          const nn::Observer* observer, double* vision_ms) const override;
  std::vector<MediaSlot> media_slots(const ModelInput& input) const override;
  // HF PaliGemma numbers positions from 1 (position_ids = cumsum(attention_mask)).
  int64_t first_position() const override { return 1; }
  void prepare(const Compute& env) override {
    DecoderModel::prepare(env);
    vision_.prepare(env);
    projector_.prepare(env);
  }

 private:
  PaliGemmaConfig cfg_;
  SiglipEncoder vision_;
  nn::Linear projector_;
};

std::unique_ptr<Model> make_paligemma_model(const Checkpoint& checkpoint);
std::unique_ptr<Processor> make_paligemma_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                    const json& config);

}  // namespace vlm
