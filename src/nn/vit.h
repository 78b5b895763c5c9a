// The vision-transformer block stack every vision tower shares (Qwen2-VL's ViT, SigLIP, ...):
// pre-norm attention + MLP blocks described by data (VitConfig) and a name table (VitNames).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "kernels/ops.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "nn/rope.h"

namespace vlm::nn {

struct VitConfig {
  int64_t dim = 0, mlp_dim = 0;
  int depth = 0, num_heads = 0;
  NormKind norm = NormKind::kLayer;
  float norm_eps = 1e-6f;
  Activation activation = Activation::kGeluTanh;
  bool gated_mlp = false;  // SwiGLU-style gate/up/down instead of fc1/fc2
  bool mlp_bias = true;
  int64_t head_dim() const { return dim / num_heads; }
};

// Tensor names inside "<prefix><layers>N.". A fused QKV projection is used when `qkv` is set.
struct VitNames {
  std::string layers = "blocks.";
  std::string norm1 = "norm1", norm2 = "norm2";
  std::string qkv = "attn.qkv", q, k, v;
  std::string out = "attn.proj";
  std::string fc1 = "mlp.fc1", fc2 = "mlp.fc2";
  std::string gate = "mlp.gate_proj", up = "mlp.up_proj", down = "mlp.down_proj";
};

struct VitWorkspace {
  Buffer normed, qkv, q, k, v, attn, tmp, hidden, up;
};

class VitStack {
 public:
  static VitStack load(const Checkpoint& ckpt, const std::string& prefix, const VitConfig& config,
                       const VitNames& names);
  const VitConfig& config() const { return cfg_; }
  int depth() const { return int(blocks_.size()); }
  void prepare(const Compute& env);  // repacks every matmul weight (MatMulWeight::prepare)

  // Runs x[N, dim] through every block in place. `rope` (cos/sin [N, head_dim]) rotates q and k
  // when given. Block b attends under masks[mask_of_block[b]] (or masks[0] when mask_of_block is
  // empty): segment masks for several images, window masks for Qwen2.5-VL.
  void forward(const Compute& env, float* x, int64_t N, const RopeTables* rope, const std::vector<AttentionMask>& masks,
               const std::vector<int>& mask_of_block, VitWorkspace& ws, const Observer* observer = nullptr) const;

 private:
  struct Block {
    Norm norm1, norm2;
    Linear qkv, q, k, v, out, fc1, fc2, gate, up, down;
  };
  VitConfig cfg_;
  std::vector<Block> blocks_;
};

}  // namespace vlm::nn
