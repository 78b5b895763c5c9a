// Gemma3Config from config.json, with transformers' defaults for every omitted key; the layer
// kinds from `layer_types` (transformers >= 4.53) or `sliding_window_pattern` (4.50, mlx-vlm), the
// RoPE of both kinds from the 4.50 keys or v5's `rope_parameters`.
#include <cmath>

#include "models/gemma3/gemma3.h"

namespace vlm {

namespace {

// A rope_scaling / rope_parameters entry: "linear" divides the frequencies by `factor`; "default"
// (or none) leaves them; other kinds are not Gemma 3's and are refused.
double linear_factor(const json& scaling, const std::string& where) {
  if (scaling.is_null()) return 1.0;
  if (!scaling.is_object()) fail(where, " is not an object");
  const std::string type =
      json_get<std::string>(scaling, "rope_type", json_get<std::string>(scaling, "type", "default", where), where);
  if (type == "default") return 1.0;
  if (type != "linear") fail(where, ": unsupported rope_type '", type, "' (Gemma 3 uses 'linear' or 'default')");
  const double f = json_get<double>(scaling, "factor", 1.0, where);
  if (!(f > 0)) fail(where, ": factor must be positive");
  return f;
}

float softcap(const json& j, const char* key, const std::string& where) {
  const float v = json_get<float>(j, key, 0.f, where);
  if (v < 0) fail(where, ": field '", key, "' must not be negative");
  return v;
}

Gemma3TextConfig parse_text(const json& top, const std::string& where) {
  Gemma3TextConfig t;
  auto it = top.find("text_config");
  const json empty = json::object();
  const json& j = it == top.end() || it->is_null() ? empty : *it;
  if (!j.is_object()) fail(where, ": field 'text_config' is not an object");
  const std::string w = where + ": text_config";
  t.hidden_size = json_get<int64_t>(j, "hidden_size", t.hidden_size, w);
  t.intermediate_size = json_get<int64_t>(j, "intermediate_size", t.intermediate_size, w);
  t.vocab_size = json_get<int64_t>(j, "vocab_size", t.vocab_size, w);
  t.num_layers = json_get<int>(j, "num_hidden_layers", t.num_layers, w);
  t.num_heads = json_get<int>(j, "num_attention_heads", t.num_heads, w);
  t.num_kv_heads = json_get<int>(j, "num_key_value_heads", t.num_kv_heads, w);
  t.head_dim = json_get<int>(j, "head_dim", t.head_dim, w);
  t.rms_norm_eps = json_get<float>(j, "rms_norm_eps", t.rms_norm_eps, w);
  t.rope_theta = json_get<double>(j, "rope_theta", t.rope_theta, w);
  t.rope_local_base_freq = json_get<double>(j, "rope_local_base_freq", t.rope_local_base_freq, w);
  if (j.contains("rope_scaling")) t.rope_linear_factor = linear_factor(j["rope_scaling"], w + ": rope_scaling");
  if (auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object()) {  // transformers v5
    const std::string wr = w + ": rope_parameters";
    if (auto g = rp->find("full_attention"); g != rp->end() && g->is_object()) {
      t.rope_theta = json_get<double>(*g, "rope_theta", t.rope_theta, wr + ".full_attention");
      t.rope_linear_factor = linear_factor(*g, wr + ".full_attention");
    }
    if (auto l = rp->find("sliding_attention"); l != rp->end() && l->is_object()) {
      t.rope_local_base_freq = json_get<double>(*l, "rope_theta", t.rope_local_base_freq, wr + ".sliding_attention");
      if (linear_factor(*l, wr + ".sliding_attention") != 1.0)
        fail(wr, ".sliding_attention: scaling of the local RoPE is not supported");
    }
  }
  t.query_pre_attn_scalar = json_get<double>(j, "query_pre_attn_scalar", t.query_pre_attn_scalar, w);
  t.sliding_window = json_get<int64_t>(j, "sliding_window", t.sliding_window, w);
  t.max_position_embeddings = json_get<int64_t>(j, "max_position_embeddings", t.max_position_embeddings, w);
  t.hidden_act = json_get<std::string>(j, "hidden_act", t.hidden_act, w);
  t.hidden_act = json_get<std::string>(j, "hidden_activation", t.hidden_act, w);
  t.final_logit_softcapping = softcap(j, "final_logit_softcapping", w);
  t.attn_logit_softcapping = softcap(j, "attn_logit_softcapping", w);
  t.tie_word_embeddings =
      json_get<bool>(j, "tie_word_embeddings", json_get<bool>(top, "tie_word_embeddings", true, where), w);
  if (t.num_layers <= 0) fail(w, ": field 'num_hidden_layers' must be positive");
  if (t.sliding_window <= 0) fail(w, ": field 'sliding_window' must be positive (got ", t.sliding_window, ")");
  if (!(t.query_pre_attn_scalar > 0)) fail(w, ": field 'query_pre_attn_scalar' must be positive");

  if (auto lt = j.find("layer_types"); lt != j.end() && !lt->is_null()) {
    if (!lt->is_array() || int(lt->size()) != t.num_layers)
      fail(w, ": field 'layer_types' must list ", t.num_layers, " layer kinds (num_hidden_layers)");
    for (const json& k : *lt) {
      const std::string kind = k.is_string() ? k.get<std::string>() : "";
      if (kind != "sliding_attention" && kind != "full_attention")
        fail(w, ": layer_types holds '", k.dump(), "' (sliding_attention or full_attention)");
      t.sliding.push_back(kind == "sliding_attention");
    }
  } else {
    const int pattern = json_get<int>(j, "sliding_window_pattern", 6, w);
    if (pattern <= 0) fail(w, ": field 'sliding_window_pattern' must be positive");
    for (int i = 0; i < t.num_layers; ++i) t.sliding.push_back((i + 1) % pattern != 0);
  }
  return t;
}

}  // namespace

Gemma3Config Gemma3Config::from_json(const json& config, const std::string& where) {
  if (!config.is_object()) fail(where, ": config is not a JSON object");
  Gemma3Config c;
  c.mm_tokens_per_image = json_get<int64_t>(config, "mm_tokens_per_image", c.mm_tokens_per_image, where);
  c.image_token_index = json_get<int32_t>(config, "image_token_index", c.image_token_index, where);
  c.boi_token_index = json_get<int32_t>(config, "boi_token_index", c.boi_token_index, where);
  c.eoi_token_index = json_get<int32_t>(config, "eoi_token_index", c.eoi_token_index, where);
  if (auto v = config.find("vision_config"); v != config.end() && !v->is_null())
    c.vision.read(*v, where + ": vision_config");
  c.text = parse_text(config, where);
  for (auto [name, id] : {std::pair{"image_token_index", c.image_token_index},
                          {"boi_token_index", c.boi_token_index},
                          {"eoi_token_index", c.eoi_token_index}})
    if (id < 0 || id >= c.text.vocab_size)
      fail(where, ": ", name, " ", id, " is outside the vocabulary (", c.text.vocab_size, ")");
  const int64_t side = c.tokens_per_side(), patches = c.vision.image_size / c.vision.patch_size;
  if (c.mm_tokens_per_image <= 0 || side * side != c.mm_tokens_per_image || patches % side != 0)
    fail(where, ": mm_tokens_per_image ", c.mm_tokens_per_image, " must be a square whose side divides the ", patches,
         " patches per side of the vision tower");
  return c;
}

int64_t Gemma3Config::tokens_per_side() const {
  int64_t s = int64_t(std::lround(std::sqrt(double(std::max<int64_t>(mm_tokens_per_image, 0)))));
  return s;
}

nn::DecoderConfig Gemma3Config::decoder_config() const {
  nn::DecoderConfig d;
  d.hidden = text.hidden_size;
  d.intermediate = text.intermediate_size;
  d.vocab = text.vocab_size;
  d.max_positions = text.max_position_embeddings;
  d.num_layers = text.num_layers;
  d.num_heads = text.num_heads;
  d.num_kv_heads = text.num_kv_heads;
  d.head_dim = text.head_dim;
  d.norm_eps = text.rms_norm_eps;
  d.norm_one_plus = true;  // Gemma3RMSNorm
  d.qk_norm = true;
  d.sandwich_norms = true;
  d.mlp_activation = nn::parse_activation(text.hidden_act, "gemma3 text_config hidden_activation");
  d.query_scale = float(1.0 / std::sqrt(text.query_pre_attn_scalar));
  d.attn_logit_softcap = text.attn_logit_softcapping;
  d.final_logit_softcap = text.final_logit_softcapping;
  d.tie_embeddings = text.tie_word_embeddings;
  // Table 0: global layers (rope_theta, linear scaling); table 1: local layers (their own base).
  d.ropes = {nn::RopeSpec{text.rope_theta, text.rope_linear_factor, {}},
             nn::RopeSpec{text.rope_local_base_freq, 1.0, {}}};
  for (bool s : text.sliding)
    d.layers.push_back(s ? nn::LayerAttention{1, text.sliding_window} : nn::LayerAttention{0, 0});
  return d;
}

}  // namespace vlm
