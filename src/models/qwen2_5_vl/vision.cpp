// Qwen2.5-VL vision tower: the Qwen2-VL patch embedding, rotary table and merger around a ViT
// with RMSNorm and SwiGLU blocks that attend within windows, except the full-attention blocks
// (whole frames). As in transformers, patch rows and rotary rows are permuted into window order
// before block 0 (windows become contiguous segments) and the merged rows are put back after the
// merger.
#include <algorithm>

#include "models/qwen2_5_vl/qwen2_5_vl.h"

namespace vlm {

Qwen2_5_VLVisionTower Qwen2_5_VLVisionTower::load(const Checkpoint& ckpt, const std::string& p,
                                                  const Qwen2_5_VLVisionConfig& cfg) {
  Qwen2_5_VLVisionTower v;
  v.cfg_ = cfg;
  const int64_t E = cfg.hidden_size;
  v.patch_embed_ = qwen2vl_load_patch_embed(ckpt, p + "patch_embed.proj.weight", E, cfg.in_channels,
                                            cfg.temporal_patch_size, cfg.patch_size);
  nn::VitConfig vit;
  vit.dim = E;
  vit.mlp_dim = cfg.intermediate_size;
  vit.depth = int(cfg.depth);
  vit.num_heads = int(cfg.num_heads);
  vit.norm = nn::NormKind::kRms;
  vit.norm_eps = 1e-6f;
  vit.activation = nn::parse_activation(cfg.hidden_act, ckpt.dir() + "/config.json: vision_config");
  vit.gated_mlp = true;
  vit.mlp_bias = true;
  v.blocks_ = nn::VitStack::load(ckpt, p, vit, nn::VitNames{});
  v.mask_of_block_.assign(size_t(cfg.depth), 0);
  for (int64_t i : cfg.fullatt_block_indexes) v.mask_of_block_.at(size_t(i)) = 1;
  v.merger_ = Qwen2VLMerger::load(ckpt, p, E, cfg.spatial_merge_size, cfg.out_hidden_size, nn::NormKind::kRms);
  return v;
}

void Qwen2_5_VLVisionTower::prepare(const Compute& env) {
  blocks_.prepare(env);
  merger_.prepare(env);
}

std::vector<float> Qwen2_5_VLVisionTower::encode(const Compute& env, const float* pixels, int64_t N,
                                                 const std::vector<Grid>& grids, const nn::Observer* observer) const {
  const int64_t E = cfg_.hidden_size, hd = cfg_.head_dim(), m = cfg_.spatial_merge_size, unit = m * m;
  qwen2vl_check_grids(grids, m, N, "qwen2_5_vl");
  const WindowIndex win = qwen2_5_vl_window_index(grids, m, cfg_.window_units());
  const nn::RopeTables rope_raster = qwen2vl_vision_rope(grids, hd, m);

  // Row permutation in patch rows: new row unit*i + r is old row unit*index[i] + r.
  auto permute = [&](const float* src, float* dst, int64_t cols) {
    for (size_t i = 0; i < win.index.size(); ++i)
      std::copy_n(src + win.index[i] * unit * cols, unit * cols, dst + int64_t(i) * unit * cols);
  };
  auto unpermute = [&](const float* src, float* dst, int64_t rows_per_unit, int64_t cols) {
    for (size_t i = 0; i < win.index.size(); ++i)
      std::copy_n(src + int64_t(i) * rows_per_unit * cols, rows_per_unit * cols,
                  dst + win.index[i] * rows_per_unit * cols);
  };
  // Observations in pixel_values order, as every other tower reports them.
  std::vector<float> scratch;
  nn::Observer in_pixel_order;
  const nn::Observer* block_observer = nullptr;
  if (observer && *observer) {
    in_pixel_order = [&](const nn::Observation& o) {
      scratch.resize(size_t(o.rows * o.cols));
      unpermute(o.data, scratch.data(), unit, o.cols);
      (*observer)(nn::Observation{o.name, o.layer, scratch.data(), o.rows, o.cols});
    };
    block_observer = &in_pixel_order;
  }

  std::vector<float> raster(size_t(N * E)), x(size_t(N * E));
  patch_embed_.forward(env, pixels, N, raster.data());
  nn::observe(observer, "vision.patch_embed", -1, raster.data(), N, E);
  permute(raster.data(), x.data(), E);
  nn::RopeTables rope;
  rope.cos.resize(rope_raster.cos.size());
  rope.sin.resize(rope_raster.sin.size());
  permute(rope_raster.cos.data(), rope.cos.data(), hd);
  permute(rope_raster.sin.data(), rope.sin.data(), hd);

  // Windows never cross frames, so the per-frame segments hold in window order too.
  std::vector<AttentionMask> masks(2);
  masks[0].causal = masks[1].causal = false;
  masks[0].segments = win.cu_seqlens;
  masks[1].segments = win.frame_seqlens;
  nn::VitWorkspace ws;
  blocks_.forward(env, x.data(), N, &rope, masks, mask_of_block_, ws, block_observer);
  const std::vector<float> merged = merger_.forward(env, x.data(), N);
  std::vector<float> out(merged.size());
  unpermute(merged.data(), out.data(), 1, cfg_.out_hidden_size);
  nn::observe(observer, "vision.out", -1, out.data(), N / unit, cfg_.out_hidden_size);
  return out;
}

}  // namespace vlm
