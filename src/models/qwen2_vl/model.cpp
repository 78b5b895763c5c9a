// Qwen2-VL: weight loading in every known checkpoint layout, and how a prompt becomes decoder rows
// (vision features scattered over the pad tokens, multimodal rotary positions). The decoder,
// cache and generation loop are the shared ones (models/decoder_model.h).
#include <algorithm>
#include <chrono>

#include "models/common.h"
#include "models/feature_cache.h"
#include "models/qwen2_vl/qwen2_vl.h"

namespace vlm {

Qwen2VLLayout qwen2vl_layout(const Checkpoint& ckpt) {
  // Layouts: HF ("model.", "visual.", "lm_head"), newer transformers ("model.language_model.",
  // "model.visual.", "lm_head"), mlx-vlm ("language_model.model.", "vision_tower.", "language_model.lm_head").
  Qwen2VLLayout layout;
  layout.decoder.model = require_prefix(ckpt, {"model.language_model.", "language_model.model.", "model."},
                                        "embed_tokens.weight", "language-model embedding");
  layout.decoder.lm_head = ckpt.has("language_model.lm_head.weight") ? "language_model.lm_head" : "lm_head";
  layout.vision =
      require_prefix(ckpt, {"model.visual.", "visual.", "vision_tower."}, "patch_embed.proj.weight", "vision tower");
  return layout;
}

ModelInfo qwen2vl_model_info(const Checkpoint& ckpt, const std::string& model_type, const Qwen2VLConfig& text) {
  ModelInfo info;
  info.model_type = model_type;
  info.vocab_size = text.vocab_size;
  info.context_length = text.max_position_embeddings;
  info.eos_ids = resolve_eos_ids(ckpt, json(text.eos_ids));
  info.num_parameters = count_parameters(ckpt);
  return info;
}

std::unique_ptr<Qwen2VLModel> Qwen2VLModel::load(const Checkpoint& ckpt) {
  auto model = std::make_unique<Qwen2VLModel>();
  Qwen2VLConfig& c = model->cfg_;
  c = Qwen2VLConfig::from_json(ckpt.config(), ckpt.dir() + "/config.json");
  const Qwen2VLLayout layout = qwen2vl_layout(ckpt);
  model->vision_ = Qwen2VLVisionTower::load(ckpt, layout.vision, c.vision);
  model->decoder_ = nn::TextDecoder::load(ckpt, layout.decoder, c.decoder_config());
  model->info_ = qwen2vl_model_info(ckpt, "qwen2_vl", c);
  return model;
}

std::vector<float> Qwen2VLModel::encode_vision(const Compute& env, const Tensor& pixel_values,
                                               const std::vector<Grid>& grids, const nn::Observer* observer) const {
  const int64_t D = cfg_.vision.patch_dim();
  if (pixel_values.ndim() != 2 || pixel_values.dim(1) != D)
    fail("qwen2_vl: pixel values have shape ", shape_str(pixel_values.shape()), ", expected [N, ", D, "]");
  std::vector<float> px = pixel_values.to_floats();
  return vision_.encode(env, px.data(), pixel_values.dim(0), grids, observer);
}

PromptRows qwen2vl_build_prompt(const nn::TextDecoder& decoder, const Qwen2VLConfig& cfg, const ModelInput& input,
                                int64_t first_position, const nn::Observer* observer, double* vision_ms,
                                const Qwen2VLEncodeFn& encode, const std::vector<double>& video_time_scale) {
  const int64_t L = int64_t(input.ids.size()), H = cfg.hidden_size, D = cfg.vision.patch_dim();
  const int64_t unit = cfg.vision.spatial_merge_size * cfg.vision.spatial_merge_size;
  PromptRows out;
  out.embeddings.resize(size_t(L * H));
  decoder.embed(input.ids.data(), L, out.embeddings.data());

  auto scatter = [&](const std::vector<Tensor>& items, const std::vector<Grid>& grids, int32_t pad, const char* kind,
                     const char* token, const char* features_name) {
    std::vector<int64_t> at;  // prompt index of every placeholder
    for (int64_t i = 0; i < L; ++i)
      if (input.ids[size_t(i)] == pad) at.push_back(i);
    const int64_t pads = int64_t(at.size());
    if (items.size() != grids.size())
      fail("qwen2_vl: ", items.size(), " ", kind, " tensors but ", grids.size(), " ", kind, " grids");
    if (items.empty()) {
      if (pads) fail("qwen2_vl: the prompt has ", pads, " ", token, " tokens but no ", kind, " was given");
      return;
    }
    int64_t rows = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const Tensor& t = items[i];
      const Grid& g = grids[i];
      if (t.ndim() != 2 || t.dim(1) != D || t.dim(0) != g[0] * g[1] * g[2])
        fail("qwen2_vl: ", kind, " ", i, " has pixel values of shape ", shape_str(t.shape()), " but its grid [", g[0],
             ", ", g[1], ", ", g[2], "] needs [", g[0] * g[1] * g[2], ", ", D, "]");
      rows += t.dim(0);
    }
    if (pads * unit != rows)
      fail("qwen2_vl: the prompt has ", pads, " ", token, " tokens but the ", kind, " inputs give ", rows / unit,
           " feature rows");
    // Items whose placeholders all lie in the cached rows (prompt cache) are not needed; items in the
    // feature cache are not encoded again; the others are encoded together.
    auto place = [&](const float* f, int64_t first, int64_t n) {
      for (int64_t j = 0; j < n; ++j) std::copy_n(f + j * H, H, out.embeddings.data() + at[size_t(first + j)] * H);
    };
    struct Pending {
      size_t item;
      int64_t first;
      uint64_t key;
    };
    std::vector<Pending> run;
    std::vector<float> px;
    std::vector<Grid> run_grids;
    int64_t run_rows = 0, first = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const int64_t n = items[i].dim(0) / unit;
      if (at[size_t(first + n - 1)] >= input.cached_rows) {
        const uint64_t key = input.feature_cache ? media_item_hash(pad, grids[i], items[i]) : 0;
        if (FeatureCache::Features hit = input.feature_cache ? input.feature_cache->find(key) : nullptr) {
          place(hit->data(), first, n);
        } else {
          std::vector<float> v = items[i].to_floats();
          px.insert(px.end(), v.begin(), v.end());
          run_grids.push_back(grids[i]);
          run_rows += items[i].dim(0);
          run.push_back({i, first, key});
        }
      }
      first += n;
    }
    if (run.empty()) return;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<float> f = encode(px.data(), run_rows, run_grids);
    if (vision_ms)
      *vision_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    nn::observe(observer, features_name, -1, f.data(), run_rows / unit, H);
    int64_t row = 0;
    for (const Pending& p : run) {
      const int64_t n = items[p.item].dim(0) / unit;
      place(f.data() + row * H, p.first, n);
      if (input.feature_cache)
        input.feature_cache->put(p.key, std::vector<float>(f.begin() + row * H, f.begin() + (row + n) * H));
      row += n;
    }
  };
  scatter(input.images, input.image_grids, cfg.image_token_id, "image", "<|image_pad|>", "image_features");
  scatter(input.videos, input.video_grids, cfg.video_token_id, "video", "<|video_pad|>", "video_features");
  nn::observe(observer, "decoder.input", -1, out.embeddings.data(), L, H);

  // Positions restart from 0 for each prompt in get_rope_index; a later prompt continues after
  // everything the sequence has seen, as decoded tokens do.
  MRopeIndex idx = qwen2vl_rope_index(input.ids, input.image_grids, input.video_grids, cfg, video_time_scale);
  for (size_t a = 0; a < 3; ++a) {
    for (int64_t& p : idx.positions[a]) p += first_position;
    out.positions.axes[a] = std::move(idx.positions[a]);
  }
  out.next_position = first_position + L + idx.delta;
  return out;
}

PromptRows Qwen2VLModel::build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                                      const nn::Observer* observer, double* vision_ms) const {
  return qwen2vl_build_prompt(decoder_, cfg_, input, first_position, observer, vision_ms,
                              [&](const float* px, int64_t rows, const std::vector<Grid>& grids) {
                                return vision_.encode(env, px, rows, grids, observer);
                              });
}

std::vector<DecoderModel::MediaSlot> qwen2vl_media_slots(const Qwen2VLConfig& cfg, const ModelInput& input) {
  const int64_t unit = cfg.vision.spatial_merge_size * cfg.vision.spatial_merge_size;
  std::vector<DecoderModel::MediaSlot> out;
  auto add = [&](const std::vector<Tensor>& items, const std::vector<Grid>& grids, int32_t token) {
    for (size_t i = 0; i < items.size() && i < grids.size(); ++i)
      out.push_back({token, grids[i][0] * grids[i][1] * grids[i][2] / unit, &items[i], grids[i]});
  };
  add(input.images, input.image_grids, cfg.image_token_id);
  add(input.videos, input.video_grids, cfg.video_token_id);
  return out;
}

std::vector<DecoderModel::MediaSlot> Qwen2VLModel::media_slots(const ModelInput& input) const {
  return qwen2vl_media_slots(cfg_, input);
}

std::unique_ptr<Model> make_qwen2_vl_model(const Checkpoint& checkpoint) {
  return Qwen2VLModel::load(checkpoint);
}

}  // namespace vlm
