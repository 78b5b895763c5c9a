// Qwen2-VL vision tower: Conv3d patch embedding (as a matmul), ViT blocks with 2-D rotary and
// block-diagonal attention, and the 2x2 PatchMerger.
#include <cmath>

#include "kernels/ops.h"
#include "models/qwen2_vl/qwen2_vl.h"
#include "nn/rope.h"

namespace vlm {

namespace {

// The Conv3d kernel has stride = kernel size, so it is a [E, C·T·P·P] matmul over the patch rows,
// whose columns are ordered C, T, P, P (channel slowest). HF stores [E, C, T, P, P]; mlx-vlm
// stores channels-last [E, T, P, P, C]. The layout is told by the shape, not by the name.
MatMulWeight load_patch_embed(const Checkpoint& ckpt, const std::string& name, const Qwen2VLVisionConfig& c) {
  std::string module = name.substr(0, name.size() - std::string(".weight").size());
  if (ckpt.has(module + ".scales"))
    fail(ckpt.file_of(name), ": the Conv3d patch embedding '", module, "' is quantized, which is not supported");
  Tensor w = ckpt.get(name);
  const int64_t E = c.embed_dim, C = c.in_channels, T = c.temporal_patch_size, P = c.patch_size;
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

}  // namespace

Qwen2VLVisionTower Qwen2VLVisionTower::load(const Checkpoint& ckpt, const std::string& p,
                                            const Qwen2VLVisionConfig& cfg) {
  Qwen2VLVisionTower v;
  v.cfg_ = cfg;
  const int64_t E = cfg.embed_dim, merged = E * cfg.spatial_merge_size * cfg.spatial_merge_size;
  v.patch_embed_ = load_patch_embed(ckpt, p + "patch_embed.proj.weight", cfg);
  nn::VitConfig vit;
  vit.dim = E;
  vit.mlp_dim = E * cfg.mlp_ratio;
  vit.depth = int(cfg.depth);
  vit.num_heads = int(cfg.num_heads);
  vit.norm = nn::NormKind::kLayer;
  vit.norm_eps = 1e-6f;
  vit.activation = nn::parse_activation(cfg.hidden_act, ckpt.dir() + "/config.json: vision_config");
  v.blocks_ = nn::VitStack::load(ckpt, p, vit, nn::VitNames{});
  v.ln_q_ = nn::Norm::load(ckpt, p + "merger.ln_q", E, nn::NormKind::kLayer, 1e-6f);
  v.merger0_ = nn::Linear::load(ckpt, p + "merger.mlp.0", merged, merged, true);
  v.merger2_ = nn::Linear::load(ckpt, p + "merger.mlp.2", merged, cfg.hidden_size, true);
  return v;
}

void Qwen2VLVisionTower::prepare(const Compute& env) {
  blocks_.prepare(env);
  merger0_.prepare(env);
  merger2_.prepare(env);
}

std::vector<float> Qwen2VLVisionTower::encode(const Compute& env, const float* pixels, int64_t N,
                                              const std::vector<Grid>& grids, const nn::Observer* observer) const {
  const int64_t E = cfg_.embed_dim, hd = cfg_.head_dim(), m = cfg_.spatial_merge_size;
  const int64_t unit = m * m;
  // Rotary angles from the un-merged (row, col) of each patch, in patchify order; attention
  // segments: one per image and per temporal slice of a video (HF's cu_seqlens).
  int64_t total = 0;
  for (auto& g : grids) {
    if (g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % m || g[2] % m)
      fail("qwen2_vl vision: grid [", g[0], ", ", g[1], ", ", g[2], "] is not positive with h, w multiples of ", m);
    total += g[0] * g[1] * g[2];
  }
  if (total != N) fail("qwen2_vl vision: pixel_values has ", N, " rows but the grids describe ", total, " patches");
  const std::vector<float> inv = nn::rope_inv_freq(int(hd / 2), 10000.0);  // hd/4 frequencies
  const size_t q4 = inv.size(), half = 2 * q4;
  nn::RopeTables rope;
  rope.cos.resize(size_t(N * hd));
  rope.sin.resize(size_t(N * hd));
  std::vector<int64_t> segments = {0};
  int64_t r = 0;
  for (auto& g : grids) {
    for (int64_t t = 0; t < g[0]; ++t) {
      segments.push_back(segments.back() + g[1] * g[2]);
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
    }
  }
  AttentionMask mask;
  mask.causal = false;
  mask.segments = segments;

  std::vector<float> x(size_t(N * E));
  patch_embed_.forward(env, pixels, N, x.data());
  nn::observe(observer, "vision.patch_embed", -1, x.data(), N, E);
  nn::VitWorkspace ws;
  blocks_.forward(env, x.data(), N, &rope, {mask}, {}, ws, observer);
  // Merger: LayerNorm per patch, then each 2x2 block's 4 consecutive rows form one row.
  std::vector<float> ln(size_t(N * E));
  ln_q_.apply(env, x.data(), N, ln.data());
  const int64_t rows = N / unit;
  std::vector<float> mid(size_t(N * E)), out(size_t(rows * cfg_.hidden_size));
  merger0_.forward(env, ln.data(), rows, mid.data());
  gelu_erf(env, mid.data(), rows * E * unit);
  merger2_.forward(env, mid.data(), rows, out.data());
  nn::observe(observer, "vision.out", -1, out.data(), rows, cfg_.hidden_size);
  return out;
}

}  // namespace vlm
