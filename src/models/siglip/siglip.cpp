#include "models/siglip/siglip.h"

#include "io/json_file.h"
#include "kernels/ops.h"
#include "nn/linear.h"

namespace vlm {

SiglipEncoder SiglipEncoder::load(const Checkpoint& ckpt, const std::string& p, const SiglipVisionConfig& v) {
  SiglipEncoder e;
  e.cfg_ = v;
  const int64_t D = v.hidden_size, P = v.patch_size, C = v.num_channels;
  const std::string conv = p + "embeddings.patch_embedding.weight";
  Tensor w = ckpt.get(conv);
  // HF stores the conv OIHW; mlx-vlm's sanitize writes it channels-last (OHWI).
  const Shape oihw = {D, C, P, P}, ohwi = {D, P, P, C};
  if (w.shape() == oihw && (w.shape() != ohwi || !ckpt.quantization().present())) {
    e.patch_channels_last_ = false;
  } else if (w.shape() == ohwi) {
    e.patch_channels_last_ = true;
  } else {
    fail(ckpt.file_of(conv), ": tensor '", conv, "' has shape ", shape_str(w.shape()), " but the config implies ",
         shape_str(oihw), " (or channels-last ", shape_str(ohwi), ")");
  }
  e.patch_w_ = MatMulWeight::dense(w.contiguous().reshape({D, C * P * P}), ckpt.file_of(conv) + ": '" + conv + "'");
  e.patch_b_ = nn::load_vector(ckpt, p + "embeddings.patch_embedding.bias", D);

  const int64_t N = v.num_patches();
  auto pos = nn::Embedding::load(ckpt, p + "embeddings.position_embedding", N, D);
  e.pos_emb_.resize(size_t(N * D));
  std::vector<int64_t> ids(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) ids[size_t(i)] = i;
  pos.lookup(ids.data(), N, e.pos_emb_.data());

  nn::VitConfig vit;
  vit.dim = D;
  vit.mlp_dim = v.intermediate_size;
  vit.depth = v.num_layers;
  vit.num_heads = v.num_heads;
  vit.norm = nn::NormKind::kLayer;
  vit.norm_eps = v.layer_norm_eps;
  vit.activation = nn::parse_activation(v.hidden_act, ckpt.dir() + "/config.json: vision_config");
  nn::VitNames names;
  names.layers = "encoder.layers.";
  names.norm1 = "layer_norm1";
  names.norm2 = "layer_norm2";
  names.qkv = "";
  names.q = "self_attn.q_proj";
  names.k = "self_attn.k_proj";
  names.v = "self_attn.v_proj";
  names.out = "self_attn.out_proj";
  e.layers_ = nn::VitStack::load(ckpt, p, vit, names);
  e.post_norm_ = nn::Norm::load(ckpt, p + "post_layernorm", D, nn::NormKind::kLayer, v.layer_norm_eps);
  return e;
}

std::vector<float> SiglipEncoder::encode(const Compute& env, const Tensor& pixels, const nn::Observer* observer) const {
  const auto& v = cfg_;
  const int64_t S = v.image_size, P = v.patch_size, C = v.num_channels, D = v.hidden_size;
  const int64_t G = S / P, N = G * G, K = C * P * P;
  const Shape want = {C, S, S}, want4 = {1, C, S, S};
  if (pixels.shape() != want && pixels.shape() != want4)
    fail("siglip: pixel values have shape ", shape_str(pixels.shape()), " but the vision tower expects ",
         shape_str(want), " (vision_config.image_size ", S, ")");
  Tensor px = pixels.dtype() == DType::F32 ? pixels.contiguous() : pixels.to(DType::F32);
  const float* src = px.data<float>();

  // Conv with kernel = stride = patch is a matmul over flattened patches in the weight's layout.
  std::vector<float> patches(size_t(N * K));
  for (int64_t gy = 0; gy < G; ++gy)
    for (int64_t gx = 0; gx < G; ++gx) {
      float* dst = patches.data() + (gy * G + gx) * K;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < P; ++y)
          for (int64_t x = 0; x < P; ++x) {
            const float val = src[(c * S + gy * P + y) * S + gx * P + x];
            const int64_t idx = patch_channels_last_ ? (y * P + x) * C + c : (c * P + y) * P + x;
            dst[idx] = val;
          }
    }
  std::vector<float> h(size_t(N * D));
  patch_w_.forward(env, patches.data(), N, h.data(), patch_b_.data());
  add_inplace(h.data(), pos_emb_.data(), N * D);
  nn::observe(observer, "vision.patch_embed", -1, h.data(), N, D);
  AttentionMask full;
  full.causal = false;
  nn::VitWorkspace ws;
  layers_.forward(env, h.data(), N, nullptr, {full}, {}, ws, observer);
  std::vector<float> out(h.size());
  post_norm_.apply(env, h.data(), N, out.data());
  return out;
}

void SiglipVisionConfig::read(const json& j, const std::string& w) {
  if (!j.is_object()) fail(w, " is not an object");
  hidden_size = json_get<int64_t>(j, "hidden_size", hidden_size, w);
  intermediate_size = json_get<int64_t>(j, "intermediate_size", intermediate_size, w);
  num_layers = json_get<int>(j, "num_hidden_layers", num_layers, w);
  num_heads = json_get<int>(j, "num_attention_heads", num_heads, w);
  num_channels = json_get<int>(j, "num_channels", num_channels, w);
  image_size = json_get<int64_t>(j, "image_size", image_size, w);
  patch_size = json_get<int64_t>(j, "patch_size", patch_size, w);
  layer_norm_eps = json_get<float>(j, "layer_norm_eps", layer_norm_eps, w);
  hidden_act = json_get<std::string>(j, "hidden_act", hidden_act, w);
  nn::parse_activation(hidden_act, w);
  const std::pair<const char*, int64_t> positive[] = {
      {"hidden_size", hidden_size},       {"intermediate_size", intermediate_size}, {"num_hidden_layers", num_layers},
      {"num_attention_heads", num_heads}, {"num_channels", num_channels},           {"patch_size", patch_size},
      {"image_size", image_size}};
  for (const auto& [field, v] : positive)
    if (v <= 0) fail(w, ": field '", field, "' must be positive (got ", v, ")");
  if (hidden_size % num_heads) fail(w, ": hidden_size ", hidden_size, " is not divisible by num_attention_heads");
  if (image_size % patch_size) fail(w, ": image_size ", image_size, " is not a multiple of patch_size");
}

SiglipImageConfig SiglipImageConfig::from_file(const std::string& path, int default_resample) {
  json j = read_json_file(path);
  SiglipImageConfig c;
  auto size = j.find("size");
  if (size != j.end() && size->is_object()) {
    c.height = json_get<int>(*size, "height", c.height, path + " size");
    c.width = json_get<int>(*size, "width", c.width, path + " size");
  }
  if (c.height <= 0 || c.width <= 0) fail(path, ": size must be positive");
  c.mean = read_image_triple(j, "image_mean", c.mean, path);
  c.std = read_image_triple(j, "image_std", c.std, path);
  c.resample = pil_resample(json_get<int>(j, "resample", default_resample, path), path);
  return c;
}

Tensor siglip_preprocess(const Image& img, const SiglipImageConfig& cfg, ThreadPool* pool) {
  std::vector<float> v =
      rescale_normalize_chw(resize(img, cfg.width, cfg.height, cfg.resample, pool), cfg.mean, cfg.std);
  return Tensor::from_floats(v, {3, cfg.height, cfg.width});
}

}  // namespace vlm
