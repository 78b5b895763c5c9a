// Gemma 3: weights in every known layout, the pooled projector, and how a prompt becomes decoder
// rows (text embeddings times bf16(sqrt(hidden)), unscaled image features over the soft tokens,
// positions from 0, one bidirectional block per image). The decoder, cache and generation loop
// are the shared ones.
#include <chrono>

#include "kernels/ops.h"
#include "models/common.h"
#include "models/gemma3/gemma3.h"

namespace vlm {

Gemma3Model::Gemma3Model(const Checkpoint& ckpt) {
  const std::string where = ckpt.dir() + "/config.json";
  cfg_ = Gemma3Config::from_json(ckpt.config(), where);
  const std::string vision = require_prefix(ckpt, {"model.vision_tower.vision_model.", "vision_tower.vision_model."},
                                            "post_layernorm.weight", "SigLIP vision tower");
  const std::string proj = require_prefix(ckpt, {"model.multi_modal_projector.", "multi_modal_projector."},
                                          "mm_input_projection_weight", "Gemma 3 multi_modal_projector");
  nn::DecoderNames names;
  names.model = require_prefix(ckpt, {"model.language_model.", "language_model.model."}, "embed_tokens.weight",
                               "Gemma 3 decoder");
  // Untied checkpoints carry their own head; mlx-vlm also writes a copy of the embedding as
  // language_model.lm_head of tied ones, which the tied table equals bit for bit.
  if (!cfg_.text.tie_word_embeddings)
    names.lm_head = find_prefix(ckpt, {"", "language_model."}, "lm_head.weight") + "lm_head";

  vision_ = SiglipEncoder::load(ckpt, vision, cfg_.vision);
  const int64_t Dv = cfg_.vision.hidden_size, H = cfg_.text.hidden_size;
  soft_emb_norm_ = nn::Norm::load(ckpt, proj + "mm_soft_emb_norm", Dv, nn::NormKind::kRms, cfg_.vision.layer_norm_eps,
                                  /*one_plus_weight=*/true);
  const std::string pw = proj + "mm_input_projection_weight";
  if (ckpt.has(pw + ".scales")) fail(ckpt.file_of(pw), ": '", pw, "' is quantized; it is a plain parameter");
  const Tensor w = ckpt.get(pw);
  if (w.shape() != Shape{Dv, H})
    fail(ckpt.file_of(pw), ": '", pw, "' has shape ", shape_str(w.shape()), " but the config implies [", Dv, ", ", H,
         "] (vision hidden, text hidden)");
  const std::vector<float> wf = w.to_floats();
  std::vector<float> wt(wf.size());  // x @ W with W [Dv, H] is x · (Wᵀ)ᵀ
  for (int64_t i = 0; i < Dv; ++i)
    for (int64_t o = 0; o < H; ++o) wt[size_t(o * Dv + i)] = wf[size_t(i * H + o)];
  projection_ = MatMulWeight::dense(Tensor::from_floats(wt, {H, Dv}), ckpt.file_of(pw) + ": '" + pw + "'");

  decoder_ = nn::TextDecoder::load(ckpt, names, cfg_.decoder_config());
  embed_scale_ = gemma_embed_scale(ckpt, names.model + "embed_tokens", H);

  info_.model_type = "gemma3";
  info_.vocab_size = cfg_.text.vocab_size;
  info_.context_length = cfg_.text.max_position_embeddings;
  info_.eos_ids = resolve_eos_ids(ckpt, ckpt.config().value("eos_token_id", json(1)));
  info_.num_parameters = count_parameters(ckpt);
  if (cfg_.text.tie_word_embeddings && ckpt.has("language_model.lm_head.weight"))
    info_.num_parameters -= cfg_.text.vocab_size * H;  // mlx-vlm's copy of the tied embedding
}

std::vector<float> Gemma3Model::project(const Compute& env, const std::vector<float>& vision_out,
                                        const nn::Observer* observer) const {
  const int64_t Dv = cfg_.vision.hidden_size, G = cfg_.vision.image_size / cfg_.vision.patch_size;
  const int64_t side = cfg_.tokens_per_side(), k = G / side, T = side * side;
  if (int64_t(vision_out.size()) != G * G * Dv) fail("gemma3: projector input of ", vision_out.size(), " floats");
  // AvgPool2d(k, stride k) over the G x G patch grid (row-major patches), per channel.
  std::vector<float> pooled(size_t(T * Dv), 0.f);
  for (int64_t ty = 0; ty < side; ++ty)
    for (int64_t tx = 0; tx < side; ++tx) {
      float* dst = pooled.data() + (ty * side + tx) * Dv;
      for (int64_t y = ty * k; y < (ty + 1) * k; ++y)
        for (int64_t x = tx * k; x < (tx + 1) * k; ++x) add_inplace(dst, vision_out.data() + (y * G + x) * Dv, Dv);
      scale_inplace(dst, 1.0f / float(k * k), Dv);
    }
  nn::observe(observer, "mm.pooled", -1, pooled.data(), T, Dv);
  soft_emb_norm_.apply(env, pooled.data(), T, pooled.data());
  nn::observe(observer, "mm.normed", -1, pooled.data(), T, Dv);
  std::vector<float> out(size_t(T * cfg_.text.hidden_size));
  projection_.forward(env, pooled.data(), T, out.data());
  return out;
}

PromptRows Gemma3Model::build_prompt(const Compute& env, const ModelInput& input, int64_t first_position,
                                     const nn::Observer* observer, double* vision_ms) const {
  if (!input.videos.empty()) fail("gemma3: video input is not supported");
  const std::vector<int32_t>& ids = input.ids;
  const int64_t H = cfg_.text.hidden_size, T = cfg_.mm_tokens_per_image, L = int64_t(ids.size());
  const int32_t soft = cfg_.image_token_index;

  PromptRows out;
  // Each image is a run of exactly T soft tokens; it attends to itself bidirectionally.
  for (int64_t i = 0; i < L;) {
    if (ids[size_t(i)] != soft) {
      ++i;
      continue;
    }
    int64_t j = i;
    while (j < L && ids[size_t(j)] == soft) ++j;
    if ((j - i) % T != 0)
      fail("gemma3: a run of ", j - i, " image soft tokens (id ", soft, ") is not a whole number of images of ", T,
           " tokens (mm_tokens_per_image)");
    for (int64_t s = i; s < j; s += T) out.bidirectional.push_back({s, s + T});
    i = j;
  }
  if (out.bidirectional.size() != input.images.size())
    fail("gemma3: the prompt has ", out.bidirectional.size() * T, " image soft tokens (", out.bidirectional.size(),
         " image(s) of ", T, ") but ", input.images.size(), " image(s) were given");

  std::vector<float>& x = out.embeddings;
  x.resize(size_t(L * H));
  decoder_.embed(ids.data(), L, x.data());
  scale_inplace(x.data(), embed_scale_, L * H);
  if (!input.images.empty()) {
    auto t0 = std::chrono::steady_clock::now();
    for (size_t m = 0; m < input.images.size(); ++m) {
      std::vector<float> vis = vision_.encode(env, input.images[m], observer);
      nn::observe(observer, "vision.out", -1, vis.data(), cfg_.vision.num_patches(), cfg_.vision.hidden_size);
      std::vector<float> feat = project(env, vis, observer);
      nn::observe(observer, "image_features", -1, feat.data(), T, H);
      std::copy(feat.begin(), feat.end(), x.begin() + out.bidirectional[m][0] * H);  // unscaled, as transformers
    }
    if (vision_ms)
      *vision_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  nn::observe(observer, "decoder.input", -1, x.data(), L, H);
  out.positions = nn::Positions::sequential(first_position, L, false);
  out.next_position = first_position + L;
  return out;
}

std::unique_ptr<Model> make_gemma3_model(const Checkpoint& checkpoint) {
  return std::make_unique<Gemma3Model>(checkpoint);
}

}  // namespace vlm
