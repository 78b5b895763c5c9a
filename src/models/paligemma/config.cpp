// PaliGemmaConfig from config.json, with transformers' defaults for every omitted key.
#include <set>

#include "models/paligemma/paligemma.h"

namespace vlm {

namespace {

const std::set<std::string>& known_gelus() {
  static const std::set<std::string> k = {"gelu_pytorch_tanh", "gelu_new", "gelu_fast", "gelu"};
  return k;
}

void check_act(const std::string& act, const std::string& where, const char* field) {
  if (!known_gelus().count(act))
    fail(where, ": unsupported ", field, " '", act, "' (gelu_pytorch_tanh, gelu_new, gelu_fast or gelu)");
}

void check_positive(int64_t v, const std::string& where, const char* field) {
  if (v <= 0) fail(where, ": field '", field, "' must be positive (got ", v, ")");
}

std::vector<int32_t> id_list(const json& cfg, const std::string& key, std::vector<int32_t> fallback,
                             const std::string& where) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return fallback;
  if (it->is_number_integer()) return {it->get<int32_t>()};
  if (it->is_array()) {
    std::vector<int32_t> out;
    for (auto& v : *it) {
      if (!v.is_number_integer()) fail(where, ": field '", key, "' must hold integers");
      out.push_back(v.get<int32_t>());
    }
    return out;
  }
  fail(where, ": field '", key, "' has the wrong type (", it->type_name(), ")");
}

SiglipVisionConfig parse_vision(const json& top, const std::string& where) {
  SiglipVisionConfig v;
  auto it = top.find("vision_config");
  if (it == top.end() || it->is_null()) {
    // PaliGemmaConfig's built-in vision tower (SigLIP So400m/14 at 224).
    v.hidden_size = 1152;
    v.intermediate_size = 4096;
    v.patch_size = 14;
    v.image_size = 224;
    v.num_layers = 27;
    v.num_heads = 16;
    return v;
  }
  v.read(*it, where + ": vision_config");
  check_act(v.hidden_act, where + ": vision_config", "hidden_act");
  return v;
}

GemmaTextConfig parse_text(const json& top, int64_t vocab_size, const std::string& where) {
  GemmaTextConfig t;
  auto it = top.find("text_config");
  if (it == top.end() || it->is_null()) {
    // PaliGemmaConfig's built-in Gemma-2B decoder.
    t.hidden_size = 2048;
    t.num_layers = 18;
    t.intermediate_size = 16384;
    t.num_heads = 8;
    t.num_kv_heads = 1;
    t.vocab_size = vocab_size;
    t.tie_word_embeddings = json_get<bool>(top, "tie_word_embeddings", true, where);
    return t;
  }
  if (!it->is_object()) fail(where, ": field 'text_config' is not an object");
  const json& j = *it;
  std::string w = where + ": text_config";
  t.hidden_size = json_get<int64_t>(j, "hidden_size", t.hidden_size, w);
  t.intermediate_size = json_get<int64_t>(j, "intermediate_size", t.intermediate_size, w);
  t.vocab_size = json_get<int64_t>(j, "vocab_size", t.vocab_size, w);
  t.num_layers = json_get<int>(j, "num_hidden_layers", t.num_layers, w);
  t.num_heads = json_get<int>(j, "num_attention_heads", t.num_heads, w);
  t.num_kv_heads = json_get<int>(j, "num_key_value_heads", t.num_kv_heads, w);
  t.head_dim = json_get<int>(j, "head_dim", t.head_dim, w);
  t.rms_norm_eps = json_get<float>(j, "rms_norm_eps", t.rms_norm_eps, w);
  t.rope_theta = json_get<double>(j, "rope_theta", t.rope_theta, w);
  t.max_position_embeddings = json_get<int64_t>(j, "max_position_embeddings", t.max_position_embeddings, w);
  // GemmaMLP prefers hidden_activation; older configs only carry hidden_act.
  t.hidden_act = json_get<std::string>(j, "hidden_act", t.hidden_act, w);
  t.hidden_act = json_get<std::string>(j, "hidden_activation", t.hidden_act, w);
  check_act(t.hidden_act, w, "hidden_activation");
  t.tie_word_embeddings =
      json_get<bool>(j, "tie_word_embeddings", json_get<bool>(top, "tie_word_embeddings", true, where), w);
  check_positive(t.hidden_size, w, "hidden_size");
  check_positive(t.intermediate_size, w, "intermediate_size");
  check_positive(t.vocab_size, w, "vocab_size");
  check_positive(t.num_layers, w, "num_hidden_layers");
  check_positive(t.num_heads, w, "num_attention_heads");
  check_positive(t.num_kv_heads, w, "num_key_value_heads");
  check_positive(t.head_dim, w, "head_dim");
  if (t.head_dim % 2) fail(w, ": head_dim ", t.head_dim, " must be even for RoPE");
  if (t.num_heads % t.num_kv_heads)
    fail(w, ": num_attention_heads ", t.num_heads, " is not a multiple of num_key_value_heads ", t.num_kv_heads);
  return t;
}

}  // namespace

PaliGemmaConfig PaliGemmaConfig::from_json(const json& config, const std::string& where) {
  if (!config.is_object()) fail(where, ": config is not a JSON object");
  PaliGemmaConfig c;
  c.projection_dim = json_get<int64_t>(config, "projection_dim", c.projection_dim, where);
  c.hidden_size = json_get<int64_t>(config, "hidden_size", c.hidden_size, where);
  c.image_token_index = json_get<int32_t>(config, "image_token_index", c.image_token_index, where);
  c.bos_token_id = json_get<int32_t>(config, "bos_token_id", c.bos_token_id, where);
  c.eos_token_ids = id_list(config, "eos_token_id", c.eos_token_ids, where);
  int64_t vocab = json_get<int64_t>(config, "vocab_size", 257152, where);
  c.vision = parse_vision(config, where);
  c.text = parse_text(config, vocab, where);
  if (c.projection_dim != c.text.hidden_size)
    fail(where, ": projection_dim ", c.projection_dim, " differs from text_config.hidden_size ", c.text.hidden_size,
         " (the projector output feeds the decoder)");
  if (c.image_token_index < 0 || c.image_token_index >= c.text.vocab_size)
    fail(where, ": image_token_index ", c.image_token_index, " is outside the vocabulary (", c.text.vocab_size, ")");
  return c;
}

}  // namespace vlm

namespace vlm {

nn::DecoderConfig PaliGemmaConfig::decoder_config() const {
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
  d.norm_one_plus = true;  // GemmaRMSNorm
  d.mlp_activation = nn::parse_activation(text.hidden_act, "paligemma text_config");
  d.tie_embeddings = text.tie_word_embeddings;
  d.ropes = {nn::RopeSpec{text.rope_theta, 1.0, {}}};
  return d;
}

}  // namespace vlm
