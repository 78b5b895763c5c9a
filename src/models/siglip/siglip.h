// SigLIP vision encoder (transformers' SiglipVisionModel without the pooling head): patch
// embedding, learned positions, the shared ViT stack, post-LayerNorm; and SiglipImageProcessor's
// resize-rescale-normalize. Used by PaliGemma and Gemma 3.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/compute.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#include "kernels/matmul.h"
#include "media/preprocess.h"
#include "nn/layers.h"
#include "nn/vit.h"

namespace vlm {

struct SiglipVisionConfig {
  int64_t hidden_size = 768, intermediate_size = 3072;
  int num_layers = 12, num_heads = 12, num_channels = 3;
  int64_t image_size = 224, patch_size = 16;
  float layer_norm_eps = 1e-6f;
  std::string hidden_act = "gelu_pytorch_tanh";
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  // Overrides the fields `vision_config` sets (transformers' SiglipVisionConfig keys) and checks
  // them, naming `where` in errors.
  void read(const json& vision_config, const std::string& where);
};

struct SiglipImageConfig {
  int height = 224, width = 224;
  std::array<float, 3> mean = {0.5f, 0.5f, 0.5f};
  std::array<float, 3> std = {0.5f, 0.5f, 0.5f};
  Resample resample = Resample::Bicubic;
  // `default_resample`: the PIL filter code when the file has no "resample" (SigLIP 3, Gemma 3 2).
  static SiglipImageConfig from_file(const std::string& path, int default_resample = 3);
};
// Resize to height x width, rescale, normalise: F32 [3, H, W].
Tensor siglip_preprocess(const Image& img, const SiglipImageConfig& cfg, ThreadPool* pool = nullptr);

class SiglipEncoder {
 public:
  // `prefix` is where "embeddings.", "encoder.layers." and "post_layernorm" live. The patch conv
  // may be stored OIHW (Hugging Face) or channels-last OHWI (mlx-vlm).
  static SiglipEncoder load(const Checkpoint& ckpt, const std::string& prefix, const SiglipVisionConfig& config);
  const SiglipVisionConfig& config() const { return cfg_; }
  // One image F32 [3, S, S] (or [1, 3, S, S]) -> post-LayerNorm states [num_patches, hidden].
  // Reports vision.patch_embed (embeddings with positions) and vision.layer to `observer`.
  std::vector<float> encode(const Compute& env, const Tensor& pixels, const nn::Observer* observer = nullptr) const;
  void prepare(const Compute& env) { layers_.prepare(env); }

 private:
  SiglipVisionConfig cfg_;
  MatMulWeight patch_w_;  // [D, C*P*P] in the stored layout
  bool patch_channels_last_ = false;
  std::vector<float> patch_b_;
  std::vector<float> pos_emb_;  // [N, D], dequantized
  nn::VitStack layers_;
  nn::Norm post_norm_;
};

}  // namespace vlm
