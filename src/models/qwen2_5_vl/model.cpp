// Qwen2.5-VL: weight loading in every known checkpoint layout; prompts go through the shared
// Qwen2-VL prompt builder and processor, with this family's tower and video time scale.
#include "models/qwen2_5_vl/qwen2_5_vl.h"

namespace vlm {

std::unique_ptr<Qwen2_5_VLModel> Qwen2_5_VLModel::load(const Checkpoint& ckpt) {
  auto model = std::make_unique<Qwen2_5_VLModel>();
  Qwen2_5_VLConfig& c = model->cfg_;
  c = Qwen2_5_VLConfig::from_json(ckpt.config(), ckpt.dir() + "/config.json");
  const Qwen2VLLayout layout = qwen2vl_layout(ckpt);  // the same three layouts as Qwen2-VL
  model->vision_ = Qwen2_5_VLVisionTower::load(ckpt, layout.vision, c.vision);
  model->decoder_ = nn::TextDecoder::load(ckpt, layout.decoder, c.text.decoder_config());
  model->info_ = qwen2vl_model_info(ckpt, "qwen2_5_vl", c.text);
  return model;
}

std::vector<float> Qwen2_5_VLModel::encode_vision(const Compute& env, const Tensor& pixel_values,
                                                  const std::vector<Grid>& grids, const nn::Observer* observer) const {
  const int64_t D = cfg_.vision.patch_dim();
  if (pixel_values.ndim() != 2 || pixel_values.dim(1) != D)
    fail("qwen2_5_vl: pixel values have shape ", shape_str(pixel_values.shape()), ", expected [N, ", D, "]");
  std::vector<float> px = pixel_values.to_floats();
  return vision_.encode(env, px.data(), pixel_values.dim(0), grids, observer);
}

PromptRows Qwen2_5_VLModel::build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                                         const nn::Observer* observer, double* vision_ms) const {
  return qwen2vl_build_prompt(
      decoder_, cfg_.text, input, first_position, observer, vision_ms,
      [&](const float* px, int64_t rows, const std::vector<Grid>& grids) {
        return vision_.encode(env, px, rows, grids, observer);
      },
      cfg_.video_time_scale(input.video_second_per_grid, input.video_grids.size()));
}

std::unique_ptr<Model> make_qwen2_5_vl_model(const Checkpoint& checkpoint) {
  return Qwen2_5_VLModel::load(checkpoint);
}

std::unique_ptr<Processor> make_qwen2_5_vl_processor(const std::string& model_dir, const Tokenizer& tokenizer,
                                                     const json& config) {
  return make_qwen2_vl_style_processor(
      model_dir, tokenizer, Qwen2_5_VLConfig::from_json(config, model_dir + "/config.json").text, "qwen2_5_vl");
}

}  // namespace vlm
