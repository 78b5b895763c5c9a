// Qwen2-VL vision tower: Conv3d patch embedding (as a matmul), ViT blocks with 2-D rotary and
// block-diagonal attention, and the 2x2 PatchMerger.
#include <cmath>

#include "kernels/ops.h"
#include "models/qwen2_vl.h"
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

void activate(const std::string& act, float* x, int64_t n) {
  if (act == "quick_gelu")
    quick_gelu(x, n);
  else if (act == "gelu")
    gelu_erf(x, n);
  else if (act == "gelu_pytorch_tanh" || act == "gelu_new")
    gelu_tanh(x, n);
  else
    silu(x, n);  // the config parser admits only these four
}

}  // namespace

Qwen2VLVisionTower Qwen2VLVisionTower::load(const Checkpoint& ckpt, const std::string& p,
                                            const Qwen2VLVisionConfig& cfg) {
  Qwen2VLVisionTower v;
  v.cfg_ = cfg;
  const int64_t E = cfg.embed_dim, M = E * cfg.mlp_ratio, merged = E * cfg.spatial_merge_size * cfg.spatial_merge_size;
  v.patch_embed_ = load_patch_embed(ckpt, p + "patch_embed.proj.weight", cfg);
  for (int64_t i = 0; i < cfg.depth; ++i) {
    std::string b = p + "blocks." + std::to_string(i) + ".";
    Block blk;
    blk.norm1_w = nn::load_vector(ckpt, b + "norm1.weight", E);
    blk.norm1_b = nn::load_vector(ckpt, b + "norm1.bias", E);
    blk.norm2_w = nn::load_vector(ckpt, b + "norm2.weight", E);
    blk.norm2_b = nn::load_vector(ckpt, b + "norm2.bias", E);
    blk.qkv = nn::Linear::load(ckpt, b + "attn.qkv", E, 3 * E, true);
    blk.proj = nn::Linear::load(ckpt, b + "attn.proj", E, E, true);
    blk.fc1 = nn::Linear::load(ckpt, b + "mlp.fc1", E, M, true);
    blk.fc2 = nn::Linear::load(ckpt, b + "mlp.fc2", M, E, true);
    v.blocks_.push_back(std::move(blk));
  }
  // A checkpoint with more blocks than the config says is a config/weights disagreement.
  if (ckpt.has(p + "blocks." + std::to_string(cfg.depth) + ".norm1.weight"))
    fail(ckpt.dir(), ": checkpoint has more vision blocks than vision_config.depth = ", cfg.depth);
  v.ln_q_w_ = nn::load_vector(ckpt, p + "merger.ln_q.weight", E);
  v.ln_q_b_ = nn::load_vector(ckpt, p + "merger.ln_q.bias", E);
  v.merger0_ = nn::Linear::load(ckpt, p + "merger.mlp.0", merged, merged, true);
  v.merger2_ = nn::Linear::load(ckpt, p + "merger.mlp.2", merged, cfg.hidden_size, true);
  return v;
}

std::vector<float> Qwen2VLVisionTower::encode(const float* pixels, int64_t N, const std::vector<Grid>& grids,
                                              Qwen2VLVisionTrace* trace) const {
  const int64_t E = cfg_.embed_dim, heads = cfg_.num_heads, hd = cfg_.head_dim(), m = cfg_.spatial_merge_size;
  const int64_t M = E * cfg_.mlp_ratio, unit = m * m;
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
  std::vector<float> cos(size_t(N * hd)), sin(size_t(N * hd));
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
              float* c = cos.data() + r * hd;
              float* s = sin.data() + r * hd;
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
  patch_embed_.forward(pixels, N, x.data());
  if (trace) trace->patch_embed = x;
  std::vector<float> ln(size_t(N * E)), qkv(size_t(N * 3 * E)), attn(size_t(N * E)), tmp(size_t(N * E));
  std::vector<float> hidden(size_t(N * M));
  const float scale = 1.0f / std::sqrt(float(hd));
  for (const Block& b : blocks_) {
    layer_norm(x.data(), b.norm1_w.data(), b.norm1_b.data(), N, E, 1e-6f, ln.data());
    b.qkv.forward(ln.data(), N, qkv.data());
    apply_rope(qkv.data(), N, 3 * E, int(heads), int(hd), cos.data(), sin.data());
    apply_rope(qkv.data() + E, N, 3 * E, int(heads), int(hd), cos.data(), sin.data());
    attention(qkv.data(), 3 * E, qkv.data() + E, qkv.data() + 2 * E, 3 * E, N, N, int(heads), int(heads), int(hd),
              scale, mask, attn.data());
    b.proj.forward(attn.data(), N, tmp.data());
    add_inplace(x.data(), tmp.data(), N * E);
    layer_norm(x.data(), b.norm2_w.data(), b.norm2_b.data(), N, E, 1e-6f, ln.data());
    b.fc1.forward(ln.data(), N, hidden.data());
    activate(cfg_.hidden_act, hidden.data(), N * M);
    b.fc2.forward(hidden.data(), N, tmp.data());
    add_inplace(x.data(), tmp.data(), N * E);
  }
  if (trace) trace->blocks_out = x;
  // Merger: LayerNorm per patch, then each 2x2 block's 4 consecutive rows form one row.
  layer_norm(x.data(), ln_q_w_.data(), ln_q_b_.data(), N, E, 1e-6f, ln.data());
  const int64_t rows = N / unit;
  std::vector<float> mid(size_t(N * E)), out(size_t(rows * cfg_.hidden_size));
  merger0_.forward(ln.data(), rows, mid.data());
  gelu_erf(mid.data(), rows * E * unit);
  merger2_.forward(mid.data(), rows, out.data());
  return out;
}

}  // namespace vlm
