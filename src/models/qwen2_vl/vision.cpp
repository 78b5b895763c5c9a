// Qwen2-VL vision tower: Conv3d patch embedding (as a matmul), ViT blocks with 2-D rotary and
// block-diagonal attention, and the 2x2 PatchMerger.
#include <cmath>

#include "kernels/ops.h"
#include "models/qwen2_vl/qwen2_vl.h"
#include "nn/rope.h"

namespace vlm {

// The Conv3d kernel has stride = kernel size, so it is a [E, C·T·P·P] matmul over the patch rows,
// whose columns are ordered C, T, P, P (channel slowest). HF stores [E, C, T, P, P]; mlx-vlm
// stores channels-last [E, T, P, P, C]. The layout is told by the shape, not by the name.
MatMulWeight qwen2vl_load_patch_embed(const Checkpoint& ckpt, const std::string& name, int64_t E, int64_t C, int64_t T,
                                      int64_t P) {
  std::string module = name.substr(0, name.size() - std::string(".weight").size());
  if (ckpt.has(module + ".scales"))
    fail(ckpt.file_of(name), ": the Conv3d patch embedding '", module, "' is quantized, which is not supported");
  Tensor w = ckpt.get(name);
  const Shape hf = {E, C, T, P, P}, channels_last = {E, T, P, P, C};
  Tensor matrix;
  if (w.shape() == hf) {
    matrix = w.contiguous().reshape({E, C * T * P * P});
  } else if (w.shape() == channels_last) {
    matrix = w.permute({0, 4, 1, 2, 3}).contiguous().reshape({E, C * T * P * P});
  } else {
    fail(ckpt.file_of(name), ": tensor '", name, "' has shape ", shape_str(w.shape()), " but vision_config implies ",
         shape_str(hf), " (or channels-last ", shape_str(channels_last), ")");
  }
  return MatMulWeight::dense(matrix, ckpt.file_of(name) + ": '" + name + "'");
}

void qwen2vl_check_grids(const std::vector<Grid>& grids, int64_t m, int64_t N, const char* family) {
  int64_t total = 0;
  for (auto& g : grids) {
    if (g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % m || g[2] % m)
      fail(family, " vision: grid [", g[0], ", ", g[1], ", ", g[2], "] is not positive with h, w multiples of ", m);
    total += g[0] * g[1] * g[2];
  }
  if (total != N) fail(family, " vision: pixel_values has ", N, " rows but the grids describe ", total, " patches");
}

// Angles from the un-merged (row, col) of each patch, in patchify order.
nn::RopeTables qwen2vl_vision_rope(const std::vector<Grid>& grids, int64_t hd, int64_t m) {
  const std::vector<float> inv = nn::rope_inv_freq(int(hd / 2), 10000.0);  // hd/4 frequencies
  const size_t q4 = inv.size(), half = 2 * q4;
  int64_t N = 0;
  for (auto& g : grids) N += g[0] * g[1] * g[2];
  nn::RopeTables rope;
  rope.cos.resize(size_t(N * hd));
  rope.sin.resize(size_t(N * hd));
  int64_t r = 0;
  for (auto& g : grids)
    for (int64_t t = 0; t < g[0]; ++t)
      for (int64_t bh = 0; bh < g[1] / m; ++bh)
        for (int64_t bw = 0; bw < g[2] / m; ++bw)
          for (int64_t mh = 0; mh < m; ++mh)
            for (int64_t mw = 0; mw < m; ++mw, ++r) {
              float row = float(bh * m + mh), col = float(bw * m + mw);
              float* c = rope.cos.data() + r * hd;
              float* s = rope.sin.data() + r * hd;
              for (size_t j = 0; j < q4; ++j) {
                float a = row * inv[j], b = col * inv[j];
                c[j] = c[j + half] = std::cos(a);
                s[j] = s[j + half] = std::sin(a);
                c[j + q4] = c[j + q4 + half] = std::cos(b);
                s[j + q4] = s[j + q4 + half] = std::sin(b);
              }
            }
  return rope;
}

Qwen2VLMerger Qwen2VLMerger::load(const Checkpoint& ckpt, const std::string& p, int64_t dim, int64_t merge,
                                  int64_t out_dim, nn::NormKind norm) {
  Qwen2VLMerger g;
  g.dim = dim;
  g.unit = merge * merge;
  g.out_dim = out_dim;
  const int64_t merged = dim * g.unit;
  g.ln_q = nn::Norm::load(ckpt, p + "merger.ln_q", dim, norm, 1e-6f);
  g.mlp0 = nn::Linear::load(ckpt, p + "merger.mlp.0", merged, merged, true);
  g.mlp2 = nn::Linear::load(ckpt, p + "merger.mlp.2", merged, out_dim, true);
  return g;
}

void Qwen2VLMerger::prepare(const Compute& env) {
  mlp0.prepare(env);
  mlp2.prepare(env);
}

std::vector<float> Qwen2VLMerger::forward(const Compute& env, const float* x, int64_t N) const {
  // Norm per patch row, then each merge block's `unit` consecutive rows form one row.
  std::vector<float> ln(size_t(N * dim));
  ln_q.apply(env, x, N, ln.data());
  const int64_t rows = N / unit;
  std::vector<float> mid(size_t(N * dim)), out(size_t(rows * out_dim));
  mlp0.forward(env, ln.data(), rows, mid.data());
  gelu_erf(env, mid.data(), rows * dim * unit);
  mlp2.forward(env, mid.data(), rows, out.data());
  return out;
}

Qwen2VLVisionTower Qwen2VLVisionTower::load(const Checkpoint& ckpt, const std::string& p,
                                            const Qwen2VLVisionConfig& cfg) {
  Qwen2VLVisionTower v;
  v.cfg_ = cfg;
  const int64_t E = cfg.embed_dim;
  v.patch_embed_ = qwen2vl_load_patch_embed(ckpt, p + "patch_embed.proj.weight", E, cfg.in_channels,
                                            cfg.temporal_patch_size, cfg.patch_size);
  nn::VitConfig vit;
  vit.dim = E;
  vit.mlp_dim = E * cfg.mlp_ratio;
  vit.depth = int(cfg.depth);
  vit.num_heads = int(cfg.num_heads);
  vit.norm = nn::NormKind::kLayer;
  vit.norm_eps = 1e-6f;
  vit.activation = nn::parse_activation(cfg.hidden_act, ckpt.dir() + "/config.json: vision_config");
  v.blocks_ = nn::VitStack::load(ckpt, p, vit, nn::VitNames{});
  v.merger_ = Qwen2VLMerger::load(ckpt, p, E, cfg.spatial_merge_size, cfg.hidden_size, nn::NormKind::kLayer);
  return v;
}

void Qwen2VLVisionTower::prepare(const Compute& env) {
  blocks_.prepare(env);
  merger_.prepare(env);
}

std::vector<float> Qwen2VLVisionTower::encode(const Compute& env, const float* pixels, int64_t N,
                                              const std::vector<Grid>& grids, const nn::Observer* observer) const {
  const int64_t E = cfg_.embed_dim, m = cfg_.spatial_merge_size;
  qwen2vl_check_grids(grids, m, N, "qwen2_vl");
  const nn::RopeTables rope = qwen2vl_vision_rope(grids, cfg_.head_dim(), m);
  // Attention segments: one per image and per temporal slice of a video (HF's cu_seqlens).
  AttentionMask mask;
  mask.causal = false;
  mask.segments = {0};
  for (auto& g : grids)
    for (int64_t t = 0; t < g[0]; ++t) mask.segments.push_back(mask.segments.back() + g[1] * g[2]);

  std::vector<float> x(size_t(N * E));
  patch_embed_.forward(env, pixels, N, x.data());
  nn::observe(observer, "vision.patch_embed", -1, x.data(), N, E);
  nn::VitWorkspace ws;
  blocks_.forward(env, x.data(), N, &rope, {mask}, {}, ws, observer);
  std::vector<float> out = merger_.forward(env, x.data(), N);
  nn::observe(observer, "vision.out", -1, out.data(), N / (m * m), cfg_.hidden_size);
  return out;
}

}  // namespace vlm
