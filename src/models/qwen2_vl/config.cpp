// Qwen2-VL config.json parsing and the multimodal rotary index (transformers' get_rope_index).
#include <algorithm>

#include "models/qwen2_vl/qwen2_vl.h"

namespace vlm {

namespace {

// Text parameters live at the top level (transformers <= 4.51 files) or under text_config (newer).
template <typename T>
T text_get(const json& j, const std::string& key, const T& fallback, const std::string& where) {
  const json* text = j.contains("text_config") && j["text_config"].is_object() ? &j["text_config"] : nullptr;
  if (text && text->contains(key) && !(*text)[key].is_null()) return json_get<T>(*text, key, fallback, where);
  return json_get<T>(j, key, fallback, where);
}

template <typename T>
T text_require(const json& j, const std::string& key, const std::string& where) {
  const json* text = j.contains("text_config") && j["text_config"].is_object() ? &j["text_config"] : nullptr;
  if (text && text->contains(key) && !(*text)[key].is_null()) return json_require<T>(*text, key, where);
  return json_require<T>(j, key, where);
}

void append_ids(const json& value, std::vector<int32_t>& out, const std::string& where) {
  auto add = [&](const json& v) {
    if (!v.is_number_integer()) fail(where, ": eos_token_id entries must be integers");
    int32_t id = v.get<int32_t>();
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  };
  if (value.is_null()) return;
  if (value.is_array()) {
    for (auto& v : value) add(v);
  } else {
    add(value);
  }
}

}  // namespace

Qwen2VLConfig Qwen2VLConfig::text_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, ": config is not a JSON object");
  Qwen2VLConfig c;
  c.hidden_size = text_require<int64_t>(j, "hidden_size", where);
  c.num_layers = text_require<int64_t>(j, "num_hidden_layers", where);
  c.num_heads = text_require<int64_t>(j, "num_attention_heads", where);
  c.num_kv_heads = text_get<int64_t>(j, "num_key_value_heads", c.num_heads, where);
  c.intermediate_size = text_require<int64_t>(j, "intermediate_size", where);
  c.vocab_size = text_require<int64_t>(j, "vocab_size", where);
  c.max_position_embeddings = text_get<int64_t>(j, "max_position_embeddings", 32768, where);
  c.rope_theta = text_get<double>(j, "rope_theta", 1e6, where);
  c.rms_norm_eps = float(text_get<double>(j, "rms_norm_eps", 1e-6, where));
  c.tie_word_embeddings = text_get<bool>(j, "tie_word_embeddings", false, where);
  c.image_token_id = json_get<int32_t>(j, "image_token_id", 151655, where);
  c.video_token_id = json_get<int32_t>(j, "video_token_id", 151656, where);
  c.vision_start_token_id = json_get<int32_t>(j, "vision_start_token_id", 151652, where);
  if (c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 || c.intermediate_size <= 0 ||
      c.vocab_size <= 0)
    fail(where,
         ": hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size and "
         "vocab_size must be positive");
  if (c.hidden_size % c.num_heads)
    fail(where, ": hidden_size ", c.hidden_size, " is not a multiple of num_attention_heads ", c.num_heads);
  if (c.num_heads % c.num_kv_heads)
    fail(where, ": num_attention_heads ", c.num_heads, " is not a multiple of num_key_value_heads ", c.num_kv_heads);
  c.head_dim = c.hidden_size / c.num_heads;  // Qwen2-VL ignores any head_dim key
  if (c.head_dim % 2) fail(where, ": head_dim ", c.head_dim, " is odd");

  json rope = text_get<json>(j, "rope_scaling", json(), where);
  if (rope.is_null()) rope = text_get<json>(j, "rope_parameters", json(), where);
  if (!rope.is_object()) fail(where, ": missing rope_scaling {\"type\": \"mrope\", \"mrope_section\": [...]}");
  std::string rope_type = json_get<std::string>(rope, "type", json_get<std::string>(rope, "rope_type", "mrope", where),
                                                where + ": rope_scaling");
  // Newer transformers rewrite "mrope" as "default" and keep mrope_section.
  if (rope_type != "mrope" && rope_type != "default")
    fail(where, ": rope_scaling type '", rope_type, "' is not supported (mrope)");
  c.mrope_section = json_require<std::vector<int>>(rope, "mrope_section", where + ": rope_scaling");
  int64_t sum = 0;
  for (int s : c.mrope_section) {
    if (s < 0) fail(where, ": rope_scaling.mrope_section has a negative entry");
    sum += s;
  }
  if (c.mrope_section.size() != 3 || sum * 2 != c.head_dim)
    fail(where, ": rope_scaling.mrope_section must have 3 entries summing to head_dim/2 = ", c.head_dim / 2);

  append_ids(j.contains("eos_token_id") ? j["eos_token_id"] : text_get<json>(j, "eos_token_id", json(), where),
             c.eos_ids, where);
  return c;
}

Qwen2VLConfig Qwen2VLConfig::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, ": config is not a JSON object");
  std::string type = json_get<std::string>(j, "model_type", "qwen2_vl", where);
  if (type != "qwen2_vl") fail(where, ": model_type '", type, "' is not qwen2_vl");
  Qwen2VLConfig c = text_from_json(j, where);
  Qwen2VLVisionConfig& v = c.vision;
  if (j.contains("vision_config") && !j["vision_config"].is_null()) {
    const json& vc = j["vision_config"];
    std::string w = where + ": vision_config";
    if (!vc.is_object()) fail(w, " is not an object");
    v.depth = json_get<int64_t>(vc, "depth", v.depth, w);
    v.embed_dim = json_get<int64_t>(vc, "embed_dim", v.embed_dim, w);
    v.num_heads = json_get<int64_t>(vc, "num_heads", v.num_heads, w);
    v.mlp_ratio = json_get<int64_t>(vc, "mlp_ratio", v.mlp_ratio, w);
    v.hidden_size = json_get<int64_t>(vc, "hidden_size", v.hidden_size, w);
    v.in_channels = json_get<int64_t>(vc, "in_channels", json_get<int64_t>(vc, "in_chans", v.in_channels, w), w);
    v.patch_size = json_get<int64_t>(vc, "patch_size", v.patch_size, w);
    v.spatial_merge_size = json_get<int64_t>(vc, "spatial_merge_size", v.spatial_merge_size, w);
    v.temporal_patch_size = json_get<int64_t>(vc, "temporal_patch_size", v.temporal_patch_size, w);
    v.hidden_act = json_get<std::string>(vc, "hidden_act", v.hidden_act, w);
  }
  std::string w = where + ": vision_config";
  if (v.depth < 0 || v.embed_dim <= 0 || v.num_heads <= 0 || v.mlp_ratio <= 0 || v.hidden_size <= 0 ||
      v.in_channels <= 0 || v.patch_size <= 0 || v.spatial_merge_size <= 0 || v.temporal_patch_size <= 0)
    fail(w, ": sizes must be positive");
  if (v.embed_dim % v.num_heads || v.head_dim() % 4)
    fail(w, ": embed_dim ", v.embed_dim, " / num_heads ", v.num_heads, " must be a multiple of 4 (2-D rotary)");
  static const char* kActs[] = {"quick_gelu", "gelu", "gelu_pytorch_tanh", "gelu_new", "silu"};
  if (std::find(std::begin(kActs), std::end(kActs), v.hidden_act) == std::end(kActs))
    fail(w, ": hidden_act '", v.hidden_act, "' is not supported");
  if (v.hidden_size != c.hidden_size)
    fail(w, ": hidden_size (merger output) ", v.hidden_size, " differs from the language model's hidden_size ",
         c.hidden_size);
  return c;
}

nn::DecoderConfig Qwen2VLConfig::decoder_config() const {
  nn::DecoderConfig d;
  d.hidden = hidden_size;
  d.intermediate = intermediate_size;
  d.vocab = vocab_size;
  d.max_positions = max_position_embeddings;
  d.num_layers = int(num_layers);
  d.num_heads = int(num_heads);
  d.num_kv_heads = int(num_kv_heads);
  d.head_dim = int(head_dim);
  d.norm_eps = rms_norm_eps;
  d.mlp_activation = nn::Activation::kSilu;
  d.qkv_bias = true;
  d.tie_embeddings = tie_word_embeddings;
  d.ropes = {nn::RopeSpec{rope_theta, 1.0, mrope_section}};
  return d;
}

MRopeIndex qwen2vl_rope_index(const std::vector<int32_t>& ids, const std::vector<Grid>& image_grids,
                              const std::vector<Grid>& video_grids, const Qwen2VLConfig& cfg,
                              const std::vector<double>& video_time_scale) {
  const int64_t L = int64_t(ids.size()), m = cfg.vision.spatial_merge_size;
  MRopeIndex out;
  // Items count only when they follow <|vision_start|>, as in transformers.
  int64_t image_nums = 0, video_nums = 0;
  for (int64_t i = 0; i + 1 < L; ++i) {
    if (ids[size_t(i)] != cfg.vision_start_token_id) continue;
    image_nums += ids[size_t(i + 1)] == cfg.image_token_id;
    video_nums += ids[size_t(i + 1)] == cfg.video_token_id;
  }
  if (image_nums > int64_t(image_grids.size()))
    fail("qwen2_vl positions: the prompt has ", image_nums, " images but ", image_grids.size(),
         " image grids were given");
  if (video_nums > int64_t(video_grids.size()))
    fail("qwen2_vl positions: the prompt has ", video_nums, " videos but ", video_grids.size(),
         " video grids were given");
  auto push = [&](int64_t t, int64_t h, int64_t w) {
    out.positions[0].push_back(t);
    out.positions[1].push_back(h);
    out.positions[2].push_back(w);
  };
  auto find_from = [&](int32_t token, int64_t start) {
    for (int64_t i = start; i < L; ++i)
      if (ids[size_t(i)] == token) return i;
    return L + 1;
  };
  int64_t st = 0, next_pos = 0, remain_images = image_nums, remain_videos = video_nums;
  size_t image_index = 0, video_index = 0;
  for (int64_t item = 0; item < image_nums + video_nums; ++item) {
    int64_t ed_image = remain_images > 0 ? find_from(cfg.image_token_id, st) : L + 1;
    int64_t ed_video = remain_videos > 0 ? find_from(cfg.video_token_id, st) : L + 1;
    if (ed_image > L && ed_video > L) fail("qwen2_vl positions: fewer vision pad tokens than announced items");
    Grid g;
    int64_t ed;
    double time_scale = 1.0;
    if (ed_image < ed_video) {
      g = image_grids[image_index++];
      --remain_images;
      ed = ed_image;
    } else {
      if (!video_time_scale.empty()) {
        if (video_index >= video_time_scale.size())
          fail("qwen2_vl positions: ", video_time_scale.size(), " video time scales for more videos");
        time_scale = video_time_scale[video_index];
      }
      g = video_grids[video_index++];
      --remain_videos;
      ed = ed_video;
    }
    const int64_t lt = g[0], lh = g[1] / m, lw = g[2] / m;
    if (lt <= 0 || lh <= 0 || lw <= 0) fail("qwen2_vl positions: grid [", g[0], ", ", g[1], ", ", g[2], "] is empty");
    const int64_t text_len = ed - st, st_idx = next_pos;
    for (int64_t i = 0; i < text_len; ++i) push(st_idx + i, st_idx + i, st_idx + i);
    const int64_t base = st_idx + text_len;
    int64_t max_t = 0;
    for (int64_t t = 0; t < lt; ++t) {
      const int64_t tt = int64_t(double(t) * time_scale);
      max_t = std::max(max_t, tt);
      for (int64_t h = 0; h < lh; ++h)
        for (int64_t w = 0; w < lw; ++w) push(base + tt, base + h, base + w);
    }
    int64_t max_pos = std::max({base - 1, base + max_t, base + lh - 1, base + lw - 1});
    next_pos = max_pos + 1;
    st = ed + lt * lh * lw;
  }
  if (st < L)
    for (int64_t i = 0; i < L - st; ++i) push(next_pos + i, next_pos + i, next_pos + i);
  if (int64_t(out.positions[0].size()) != L)
    fail("qwen2_vl positions: the vision pad tokens of the prompt do not match the grids (", out.positions[0].size(),
         " positions for ", L, " tokens)");
  int64_t max_all = -1;
  for (auto& row : out.positions)
    for (int64_t p : row) max_all = std::max(max_all, p);
  out.delta = max_all + 1 - L;
  return out;
}

}  // namespace vlm
