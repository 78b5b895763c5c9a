// Qwen2.5-VL config.json parsing (flat or transformers >= 4.52 nested text_config) and the window
// index of the vision tower (transformers' get_window_index).
#include <algorithm>
#include <cmath>

#include "models/qwen2_5_vl/qwen2_5_vl.h"

namespace vlm {

Qwen2_5_VLConfig Qwen2_5_VLConfig::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, ": config is not a JSON object");
  const std::string type = json_get<std::string>(j, "model_type", "qwen2_5_vl", where);
  if (type != "qwen2_5_vl") fail(where, ": model_type '", type, "' is not qwen2_5_vl");
  Qwen2_5_VLConfig c;
  c.text = Qwen2VLConfig::text_from_json(j, where);
  Qwen2_5_VLVisionConfig& v = c.vision;
  const std::string w = where + ": vision_config";
  if (j.contains("vision_config") && !j["vision_config"].is_null()) {
    const json& vc = j["vision_config"];
    if (!vc.is_object()) fail(w, " is not an object");
    v.depth = json_get<int64_t>(vc, "depth", v.depth, w);
    v.hidden_size = json_get<int64_t>(vc, "hidden_size", v.hidden_size, w);
    v.intermediate_size = json_get<int64_t>(vc, "intermediate_size", v.intermediate_size, w);
    v.num_heads = json_get<int64_t>(vc, "num_heads", v.num_heads, w);
    v.out_hidden_size = json_get<int64_t>(vc, "out_hidden_size", v.out_hidden_size, w);
    v.in_channels = json_get<int64_t>(vc, "in_channels", json_get<int64_t>(vc, "in_chans", v.in_channels, w), w);
    v.patch_size = json_get<int64_t>(vc, "patch_size", v.patch_size, w);
    v.spatial_merge_size = json_get<int64_t>(vc, "spatial_merge_size", v.spatial_merge_size, w);
    v.temporal_patch_size = json_get<int64_t>(vc, "temporal_patch_size", v.temporal_patch_size, w);
    v.window_size = json_get<int64_t>(vc, "window_size", v.window_size, w);
    v.tokens_per_second = json_get<int64_t>(vc, "tokens_per_second", v.tokens_per_second, w);
    v.fullatt_block_indexes = json_get<std::vector<int64_t>>(vc, "fullatt_block_indexes", v.fullatt_block_indexes, w);
    v.hidden_act = json_get<std::string>(vc, "hidden_act", v.hidden_act, w);
  }
  if (v.depth <= 0 || v.hidden_size <= 0 || v.intermediate_size <= 0 || v.num_heads <= 0 || v.out_hidden_size <= 0 ||
      v.in_channels <= 0 || v.patch_size <= 0 || v.spatial_merge_size <= 0 || v.temporal_patch_size <= 0 ||
      v.window_size <= 0 || v.tokens_per_second < 0)
    fail(w, ": sizes must be positive");
  if (v.hidden_size % v.num_heads || v.head_dim() % 4)
    fail(w, ": hidden_size ", v.hidden_size, " / num_heads ", v.num_heads, " must be a multiple of 4 (2-D rotary)");
  if (v.window_size % (v.patch_size * v.spatial_merge_size))
    fail(w, ": window_size ", v.window_size,
         " is not a multiple of patch_size * spatial_merge_size = ", v.patch_size * v.spatial_merge_size);
  for (int64_t i : v.fullatt_block_indexes)
    if (i < 0 || i >= v.depth) fail(w, ": fullatt_block_indexes entry ", i, " is outside [0, depth = ", v.depth, ")");
  static const char* kActs[] = {"silu", "gelu", "gelu_pytorch_tanh", "gelu_new", "quick_gelu"};
  if (std::find(std::begin(kActs), std::end(kActs), v.hidden_act) == std::end(kActs))
    fail(w, ": hidden_act '", v.hidden_act, "' is not supported");
  if (v.out_hidden_size != c.text.hidden_size)
    fail(w, ": out_hidden_size (merger output) ", v.out_hidden_size, " differs from the language model's hidden_size ",
         c.text.hidden_size);
  // What the shared Qwen2-VL processor, prompt builder and position index read.
  Qwen2VLVisionConfig& shared = c.text.vision;
  shared.depth = v.depth;
  shared.embed_dim = v.hidden_size;
  shared.num_heads = v.num_heads;
  shared.hidden_size = v.out_hidden_size;
  shared.in_channels = v.in_channels;
  shared.patch_size = v.patch_size;
  shared.spatial_merge_size = v.spatial_merge_size;
  shared.temporal_patch_size = v.temporal_patch_size;
  shared.hidden_act = v.hidden_act;
  return c;
}

// transformers casts second_per_grid_t to the integer dtype of the frame range before multiplying
// (modeling_qwen2_5_vl.py, the revision the fixtures follow): 0.5 s per grid step -> 0, so every
// frame of such a video gets the same temporal position. Integer values (fps 1, 0.5, 2/3 of the
// default 2) are unaffected.
std::vector<double> Qwen2_5_VLConfig::video_time_scale(const std::vector<double>& second_per_grid,
                                                       size_t videos) const {
  if (!second_per_grid.empty() && second_per_grid.size() != videos)
    fail("qwen2_5_vl: ", second_per_grid.size(), " second_per_grid values for ", videos, " videos");
  std::vector<double> out;
  for (size_t i = 0; i < videos; ++i) {
    const double spg = second_per_grid.empty() ? 1.0 : second_per_grid[i];
    if (!(spg >= 0) || !std::isfinite(spg)) fail("qwen2_5_vl: second_per_grid_t of video ", i, " is ", spg);
    out.push_back(std::trunc(spg) * double(vision.tokens_per_second));
  }
  return out;
}

WindowIndex qwen2_5_vl_window_index(const std::vector<Grid>& grids, int64_t m, int64_t k) {
  if (m <= 0 || k <= 0) fail("qwen2_5_vl window index: merge size ", m, " and window side ", k, " must be positive");
  WindowIndex out;
  out.cu_seqlens = {0};
  out.frame_seqlens = {0};
  const int64_t unit = m * m;
  int64_t offset = 0;  // merged units of the previous items
  for (const Grid& g : grids) {
    if (g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % m || g[2] % m)
      fail("qwen2_5_vl vision: grid [", g[0], ", ", g[1], ", ", g[2], "] is not positive with h, w multiples of ", m);
    const int64_t lt = g[0], lh = g[1] / m, lw = g[2] / m;
    // Padding to a multiple of k is k - size % k: a whole empty row/column when already a multiple.
    const int64_t nh = (lh + k - lh % k) / k, nw = (lw + k - lw % k) / k;
    for (int64_t t = 0; t < lt; ++t) {
      for (int64_t wh = 0; wh < nh; ++wh)
        for (int64_t ww = 0; ww < nw; ++ww) {
          int64_t n = 0;
          for (int64_t h = wh * k; h < std::min(lh, (wh + 1) * k); ++h)
            for (int64_t w = ww * k; w < std::min(lw, (ww + 1) * k); ++w, ++n)
              out.index.push_back(offset + (t * lh + h) * lw + w);
          if (n) out.cu_seqlens.push_back(out.cu_seqlens.back() + n * unit);  // empty windows dropped
        }
      out.frame_seqlens.push_back(out.frame_seqlens.back() + lh * lw * unit);
    }
    offset += lt * lh * lw;
  }
  return out;
}

}  // namespace vlm
