// Qwen2-VL (Qwen2VLForConditionalGeneration), faithful to Hugging Face transformers: a ViT with 2-D
// rotary and a 2x2 patch merger feeding a Qwen2 decoder with multimodal (3-D) rotary positions.
// Loads Hugging Face, newer-transformers and mlx-vlm checkpoint layouts, dense or MLX-quantized.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "media/preprocess.h"
#include "models/decoder_model.h"
#include "nn/linear.h"
#include "nn/vit.h"
#include "text/tokenizer.h"

namespace vlm {

using Grid = std::array<int64_t, 3>;  // {t, h, w} in patches

struct Qwen2VLVisionConfig {
  int64_t depth = 32, embed_dim = 1280, num_heads = 16, mlp_ratio = 4;
  int64_t hidden_size = 3584;  // merger output; HF's default, which re-saved configs rely on
  int64_t in_channels = 3, patch_size = 14, spatial_merge_size = 2, temporal_patch_size = 2;
  std::string hidden_act = "quick_gelu";
  int64_t head_dim() const { return embed_dim / num_heads; }
  int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
};

struct Qwen2VLConfig {
  int64_t hidden_size = 0, num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int64_t intermediate_size = 0, vocab_size = 0, max_position_embeddings = 32768;
  double rope_theta = 1e6;
  float rms_norm_eps = 1e-6f;
  std::vector<int> mrope_section;
  bool tie_word_embeddings = false;
  int32_t image_token_id = 151655, video_token_id = 151656, vision_start_token_id = 151652;
  std::vector<int32_t> eos_ids;
  Qwen2VLVisionConfig vision;

  // config.json content (text keys at top level or under text_config); `where` names the file.
  static Qwen2VLConfig from_json(const json& config, const std::string& where);
  // The language-model part and the vision token ids only (shared with Qwen2.5-VL, whose
  // vision_config differs); `vision` keeps its defaults.
  static Qwen2VLConfig text_from_json(const json& config, const std::string& where);
  nn::DecoderConfig decoder_config() const;
};

// Multimodal rotary positions (T, H, W rows) of a prompt and rope_delta = max position + 1 - L.
struct Qwen2VLImageConfig {
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  std::array<float, 3> mean = {0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> std = {0.26862954f, 0.26130258f, 0.27577711f};
  // Reads preprocessor_config.json (all three layouts: top-level min/max_pixels,
  // size.{min,max}_pixels, size.{shortest,longest}_edge).
  static Qwen2VLImageConfig from_file(const std::string& path);
};

// transformers' smart_resize: returns {height, width}, multiples of factor, within the pixel bounds.
std::array<int, 2> qwen2vl_smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels);

struct Qwen2VLPatches {
  Tensor pixel_values;              // F32 [t*h*w, C*temporal*patch*patch]
  std::array<int64_t, 3> grid_thw;  // {t, h, w} in patches
  int resized_height = 0, resized_width = 0;
};
// One image (repeated to temporal_patch_size frames), or video frames (all the same size;
// the last is repeated to a multiple of temporal_patch_size). Resizes with PIL bicubic.
Qwen2VLPatches qwen2vl_preprocess(const std::vector<Image>& frames, const Qwen2VLImageConfig& cfg,
                                  ThreadPool* pool = nullptr);

struct MRopeIndex {
  std::array<std::vector<int64_t>, 3> positions;
  int64_t delta = 0;
};
// transformers' Qwen2VLModel.get_rope_index for one sequence. Video i's grid frame t gets the
// temporal offset int64(t * video_time_scale[i]) (Qwen2.5-VL: second_per_grid_t * tokens_per_second);
// an empty list means 1 per frame (Qwen2-VL). Images always step by 1 (they have one grid frame).
MRopeIndex qwen2vl_rope_index(const std::vector<int32_t>& ids, const std::vector<Grid>& image_grids,
                              const std::vector<Grid>& video_grids, const Qwen2VLConfig& config,
                              const std::vector<double>& video_time_scale = {});

// The decoder rows of a Qwen2-VL-style prompt: token embeddings with the vision features
// (`encode` runs the tower over the concatenated pixel rows of all images, then of all videos)
// written over the <|image_pad|> / <|video_pad|> tokens, and get_rope_index's positions from
// `first_position`. Checks pixel shapes, grids and pad counts; shared by Qwen2-VL and Qwen2.5-VL.
using Qwen2VLEncodeFn = std::function<std::vector<float>(const float* pixels, int64_t rows, const std::vector<Grid>&)>;
// Where the decoder and the vision tower sit, probed over every known layout (Hugging Face before
// and after transformers 4.52, mlx-vlm); shared with Qwen2.5-VL.
struct Qwen2VLLayout {
  nn::DecoderNames decoder;
  std::string vision;  // prefix of the vision tower's tensors
};
Qwen2VLLayout qwen2vl_layout(const Checkpoint& ckpt);
// What ModelInfo says of a Qwen2-VL-style checkpoint with this text config.
ModelInfo qwen2vl_model_info(const Checkpoint& ckpt, const std::string& model_type, const Qwen2VLConfig& text);

// Where each image and video sits in the prompt, for prompt-cache keys (shared with Qwen2.5-VL).
std::vector<DecoderModel::MediaSlot> qwen2vl_media_slots(const Qwen2VLConfig& config, const ModelInput& input);

PromptRows qwen2vl_build_prompt(const nn::TextDecoder& decoder, const Qwen2VLConfig& config, const ModelInput& input,
                                int64_t first_position, const nn::Observer* observer, double* vision_ms,
                                const Qwen2VLEncodeFn& encode, const std::vector<double>& video_time_scale = {});

// Pieces of the vision tower that Qwen2.5-VL shares.
// The Conv3d patch embedding [E, C, T, P, P] (or mlx-vlm's channels-last [E, T, P, P, C]) as an
// [E, C·T·P·P] matmul over pixel_values rows.
MatMulWeight qwen2vl_load_patch_embed(const Checkpoint& ckpt, const std::string& name, int64_t embed_dim,
                                      int64_t in_channels, int64_t temporal_patch_size, int64_t patch_size);
// Checks the grids (positive, h and w multiples of `merge`) against `rows` pixel rows.
void qwen2vl_check_grids(const std::vector<Grid>& grids, int64_t merge, int64_t rows, const char* family);
// The 2-D rotary table (cos/sin [N, head_dim]) of the patch rows, in pixel_values order.
nn::RopeTables qwen2vl_vision_rope(const std::vector<Grid>& grids, int64_t head_dim, int64_t merge);
// PatchMerger: norm (LayerNorm in Qwen2-VL, RMSNorm in Qwen2.5-VL), merge² consecutive rows
// concatenated, mlp.0, exact GELU, mlp.2.
struct Qwen2VLMerger {
  nn::Norm ln_q;
  nn::Linear mlp0, mlp2;
  int64_t dim = 0, unit = 0, out_dim = 0;
  static Qwen2VLMerger load(const Checkpoint& ckpt, const std::string& prefix, int64_t dim, int64_t merge,
                            int64_t out_dim, nn::NormKind norm);
  void prepare(const Compute& env);
  std::vector<float> forward(const Compute& env, const float* x, int64_t rows) const;  // [rows/unit, out_dim]
};

class Qwen2VLVisionTower {
 public:
  // `prefix` is where the tower's tensors live ("visual.", "model.visual." or "vision_tower.").
  static Qwen2VLVisionTower load(const Checkpoint& ckpt, const std::string& prefix, const Qwen2VLVisionConfig& cfg);
  // pixel_values [N, patch_dim] for the items described by `grids` (N = Σ t·h·w, in patchify order);
  // returns merged features [N / merge², hidden_size]. Attention is block-diagonal per image and
  // per temporal slice. Reports vision.patch_embed, vision.layer and vision.out to `observer`.
  std::vector<float> encode(const Compute& env, const float* pixel_values, int64_t rows, const std::vector<Grid>& grids,
                            const nn::Observer* observer = nullptr) const;
  const Qwen2VLVisionConfig& config() const { return cfg_; }
  void prepare(const Compute& env);

 private:
  Qwen2VLVisionConfig cfg_;
  MatMulWeight patch_embed_;  // [E, C·T·P·P], columns in pixel_values order
  nn::VitStack blocks_;
  Qwen2VLMerger merger_;
};

class Qwen2VLModel : public DecoderModel {
 public:
  static std::unique_ptr<Qwen2VLModel> load(const Checkpoint& ckpt);
  const Qwen2VLConfig& config() const { return cfg_; }
  const Qwen2VLVisionTower& vision() const { return vision_; }

  // The vision tower on stored pixel values (checks the shape against the config).
  std::vector<float> encode_vision(const Compute& env, const Tensor& pixel_values, const std::vector<Grid>& grids,
                                   const nn::Observer* observer = nullptr) const;
  PromptRows build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                          const nn::Observer* observer, double* vision_ms) const override;
  std::vector<MediaSlot> media_slots(const ModelInput& input) const override;
  void prepare(const Compute& env) override {
    DecoderModel::prepare(env);
    vision_.prepare(env);
  }

 private:
  Qwen2VLConfig cfg_;
  Qwen2VLVisionTower vision_;
};

std::unique_ptr<Model> make_qwen2_vl_model(const Checkpoint& checkpoint);
std::unique_ptr<Processor> make_qwen2_vl_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                   const json& config);
// The same processor for a family whose config is already parsed (Qwen2.5-VL): patch, temporal
// and merge sizes come from `config.vision`. Each video also gets its second_per_grid_t
// (temporal_patch_size / fps of its frames, fps 2 when unknown) in ModelInput::video_second_per_grid.
std::unique_ptr<Processor> make_qwen2_vl_style_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                         const Qwen2VLConfig& config, const std::string& family);

}  // namespace vlm
