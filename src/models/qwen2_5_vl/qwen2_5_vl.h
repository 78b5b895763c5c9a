// Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration), faithful to Hugging Face transformers: a ViT
// with RMSNorm, SwiGLU MLPs and window attention (full attention in `fullatt_block_indexes`), a 2x2
// merger, and the Qwen2-VL decoder, processor and multimodal positions (video frames spaced by
// second_per_grid_t * tokens_per_second). Loads Hugging Face (old and >= 4.52 names) and mlx-vlm
// layouts, dense or MLX-quantized.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/qwen2_vl/qwen2_vl.h"

namespace vlm {

struct Qwen2_5_VLVisionConfig {
  // Qwen2_5_VLVisionConfig's defaults (hidden_size and out_hidden_size 3584, tokens_per_second 4).
  int64_t depth = 32, hidden_size = 3584, intermediate_size = 3420, num_heads = 16, out_hidden_size = 3584;
  int64_t in_channels = 3, patch_size = 14, spatial_merge_size = 2, temporal_patch_size = 2;
  int64_t window_size = 112, tokens_per_second = 4;
  std::vector<int64_t> fullatt_block_indexes = {7, 15, 23, 31};
  std::string hidden_act = "silu";
  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
  int64_t window_units() const { return window_size / spatial_merge_size / patch_size; }  // window side, merged
};

struct Qwen2_5_VLConfig {
  Qwen2VLConfig text;  // decoder, token ids; text.vision carries the patch/merge sizes for the processor
  Qwen2_5_VLVisionConfig vision;
  static Qwen2_5_VLConfig from_json(const json& config, const std::string& where);
  // Temporal position step per grid frame of each video: int(second_per_grid_t) * tokens_per_second.
  std::vector<double> video_time_scale(const std::vector<double>& second_per_grid, size_t videos) const;
};

// transformers' get_window_index over the items of one vision call: `index` lists merged-unit ids
// in window order (windows of window_units x window_units units per frame, raster order, padding
// dropped); `cu_seqlens` the window boundaries in patch rows (empty windows removed), and
// `frame_seqlens` the per-frame boundaries of the full-attention blocks.
struct WindowIndex {
  std::vector<int64_t> index, cu_seqlens, frame_seqlens;
};
WindowIndex qwen2_5_vl_window_index(const std::vector<Grid>& grids, int64_t merge, int64_t window_units);

class Qwen2_5_VLVisionTower {
 public:
  static Qwen2_5_VLVisionTower load(const Checkpoint& ckpt, const std::string& prefix,
                                    const Qwen2_5_VLVisionConfig& cfg);
  // pixel_values [N, patch_dim] of the items in `grids`; returns merged features
  // [N / merge², out_hidden_size] in pixel_values unit order. Observations (vision.patch_embed,
  // vision.layer, vision.out) are in pixel_values row order, not window order.
  std::vector<float> encode(const Compute& env, const float* pixel_values, int64_t rows, const std::vector<Grid>& grids,
                            const nn::Observer* observer = nullptr) const;
  void prepare(const Compute& env);

 private:
  Qwen2_5_VLVisionConfig cfg_;
  MatMulWeight patch_embed_;
  nn::VitStack blocks_;
  std::vector<int> mask_of_block_;  // 0: windows, 1: whole frames
  Qwen2VLMerger merger_;
};

class Qwen2_5_VLModel : public DecoderModel {
 public:
  static std::unique_ptr<Qwen2_5_VLModel> load(const Checkpoint& ckpt);
  const Qwen2_5_VLConfig& config() const { return cfg_; }
  std::vector<float> encode_vision(const Compute& env, const Tensor& pixel_values, const std::vector<Grid>& grids,
                                   const nn::Observer* observer = nullptr) const;
  PromptRows build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                          const nn::Observer* observer, double* vision_ms) const override;
  std::vector<MediaSlot> media_slots(const ModelInput& input) const override {
    return qwen2vl_media_slots(cfg_.text, input);
  }
  void prepare(const Compute& env) override {
    DecoderModel::prepare(env);
    vision_.prepare(env);
  }

 private:
  Qwen2_5_VLConfig cfg_;
  Qwen2_5_VLVisionTower vision_;
};

std::unique_ptr<Model> make_qwen2_5_vl_model(const Checkpoint& checkpoint);
std::unique_ptr<Processor> make_qwen2_5_vl_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                     const json& config);

}  // namespace vlm
