// PaliGemma: weights in every known layout, and how a prompt becomes decoder rows (projected SigLIP
// features over the <image> tokens, Gemma's embedding scale, positions from 1, one bidirectional
// prompt block). The decoder, cache and generation loop are the shared ones.
#include <chrono>
#include <cmath>

#include "kernels/ops.h"
#include "models/common.h"
#include "models/feature_cache.h"
#include "models/paligemma/paligemma.h"

namespace vlm {

PaliGemmaModel::PaliGemmaModel(const Checkpoint& ckpt) {
  const std::string where = ckpt.dir() + "/config.json";
  cfg_ = PaliGemmaConfig::from_json(ckpt.config(), where);
  const std::string vision = require_prefix(ckpt, {"vision_tower.vision_model.", "model.vision_tower.vision_model."},
                                            "post_layernorm.weight", "SigLIP vision tower");
  nn::DecoderNames names;
  names.model =
      require_prefix(ckpt, {"language_model.model.", "model.language_model."}, "embed_tokens.weight", "Gemma decoder");
  names.lm_head =
      cfg_.text.tie_word_embeddings ? "" : find_prefix(ckpt, {"", "language_model."}, "lm_head.weight") + "lm_head";
  const std::string proj = find_prefix(ckpt, {"", "model."}, "multi_modal_projector.linear.weight");

  vision_ = SiglipEncoder::load(ckpt, vision, cfg_.vision);
  projector_ =
      nn::Linear::load(ckpt, proj + "multi_modal_projector.linear", cfg_.vision.hidden_size, cfg_.projection_dim, true);
  decoder_ = nn::TextDecoder::load(ckpt, names, cfg_.decoder_config());
  embed_scale_ = gemma_embed_scale(ckpt, names.model + "embed_tokens", cfg_.text.hidden_size);

  info_.model_type = "paligemma";
  info_.vocab_size = cfg_.text.vocab_size;
  info_.context_length = cfg_.text.max_position_embeddings;
  info_.eos_ids = resolve_eos_ids(ckpt, json(cfg_.eos_token_ids));
  info_.num_parameters = count_parameters(ckpt);
}

std::vector<float> PaliGemmaModel::project(const Compute& env, const std::vector<float>& vision_out) const {
  const int64_t n = int64_t(vision_out.size()) / cfg_.vision.hidden_size;
  return projector_.forward(env, vision_out, n);
}

PromptRows PaliGemmaModel::build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                                        const nn::Observer* observer, double* vision_ms) const {
  if (!input.videos.empty()) fail("paligemma: video input is not supported");
  const std::vector<int32_t>& ids = input.ids;
  const int64_t H = cfg_.text.hidden_size, N = cfg_.vision.num_patches(), L = int64_t(ids.size());
  int64_t image_tokens = 0;
  for (int32_t id : ids) image_tokens += id == cfg_.image_token_index;
  if (image_tokens != N * int64_t(input.images.size()))
    fail("paligemma: the prompt has ", image_tokens, " <image> tokens (id ", cfg_.image_token_index, ") but ",
         input.images.size(), " image(s) of ", N, " tokens each were given");

  PromptRows out;
  std::vector<float>& x = out.embeddings;
  x.resize(size_t(L * H));
  decoder_.embed(ids.data(), L, x.data());
  if (!input.images.empty()) {
    // transformers divides the projector output by sqrt(text hidden) before merging.
    const float inv = 1.0f / std::sqrt(float(H));
    int64_t row = 0;
    for (const Tensor& img : input.images) {
      std::vector<int64_t> at;  // this image's rows
      while (int64_t(at.size()) < N) {
        while (ids[size_t(row)] != cfg_.image_token_index) ++row;
        at.push_back(row++);
      }
      if (at.back() < input.cached_rows) continue;  // prompt cache: its rows are already computed
      const uint64_t key = input.feature_cache ? media_item_hash(cfg_.image_token_index, {}, img) : 0;
      FeatureCache::Features feat = input.feature_cache ? input.feature_cache->find(key) : nullptr;
      if (!feat) {
        auto t0 = std::chrono::steady_clock::now();
        std::vector<float> vis = vision_.encode(env, img, observer);
        nn::observe(observer, "vision.out", -1, vis.data(), N, cfg_.vision.hidden_size);
        auto projected = std::make_shared<const std::vector<float>>(project(env, vis));
        nn::observe(observer, "image_features", -1, projected->data(), N, H);
        if (input.feature_cache) input.feature_cache->put(key, *projected);
        feat = projected;
        if (vision_ms)
          *vision_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      }
      for (int64_t j = 0; j < N; ++j)
        for (int64_t c = 0; c < H; ++c) x[size_t(at[size_t(j)] * H + c)] = (*feat)[size_t(j * H + c)] * inv;
    }
  }
  nn::observe(observer, "decoder.input", -1, x.data(), L, H);
  scale_inplace(x.data(), embed_scale_, L * H);
  out.positions = nn::Positions::sequential(first_position, L, false);
  out.next_position = first_position + L;
  // The first prompt (image, <bos>, text, "\n") is the bidirectional prefix; text prefilled after
  // it (a suffix, as HF's `suffix` tokens) is causal like generated tokens, and may be chunked.
  out.prefix_lm = first_position == this->first_position();
  return out;
}

std::vector<DecoderModel::MediaSlot> PaliGemmaModel::media_slots(const ModelInput& input) const {
  std::vector<MediaSlot> out;
  for (const Tensor& img : input.images) out.push_back({cfg_.image_token_index, cfg_.vision.num_patches(), &img, {}});
  return out;
}

std::unique_ptr<Model> make_paligemma_model(const Checkpoint& checkpoint) {
  return std::make_unique<PaliGemmaModel>(checkpoint);
}

}  // namespace vlm
