#include "nn/vit.h"

#include <cmath>

#include "core/error.h"

namespace vlm::nn {

VitStack VitStack::load(const Checkpoint& ckpt, const std::string& prefix, const VitConfig& c, const VitNames& n) {
  if (c.dim <= 0 || c.mlp_dim <= 0 || c.depth <= 0 || c.num_heads <= 0 || c.dim % c.num_heads != 0)
    fail(ckpt.dir(), "/config.json: vision config needs positive sizes with hidden size ", c.dim,
         " divisible by num_heads ", c.num_heads);
  VitStack s;
  s.cfg_ = c;
  const int64_t D = c.dim, M = c.mlp_dim;
  for (int i = 0; i < c.depth; ++i) {
    const std::string p = prefix + n.layers + std::to_string(i) + ".";
    Block b;
    b.norm1 = Norm::load(ckpt, p + n.norm1, D, c.norm, c.norm_eps);
    b.norm2 = Norm::load(ckpt, p + n.norm2, D, c.norm, c.norm_eps);
    if (!n.qkv.empty()) {
      b.qkv = Linear::load(ckpt, p + n.qkv, D, 3 * D, true);
    } else {
      b.q = Linear::load(ckpt, p + n.q, D, D, true);
      b.k = Linear::load(ckpt, p + n.k, D, D, true);
      b.v = Linear::load(ckpt, p + n.v, D, D, true);
    }
    b.out = Linear::load(ckpt, p + n.out, D, D, true);
    if (c.gated_mlp) {
      b.gate = Linear::load(ckpt, p + n.gate, D, M, c.mlp_bias);
      b.up = Linear::load(ckpt, p + n.up, D, M, c.mlp_bias);
      b.down = Linear::load(ckpt, p + n.down, M, D, c.mlp_bias);
    } else {
      b.fc1 = Linear::load(ckpt, p + n.fc1, D, M, c.mlp_bias);
      b.fc2 = Linear::load(ckpt, p + n.fc2, M, D, c.mlp_bias);
    }
    s.blocks_.push_back(std::move(b));
  }
  // More blocks in the checkpoint than the config says is a config/weights disagreement.
  if (ckpt.has(prefix + n.layers + std::to_string(c.depth) + "." + n.norm1 + ".weight"))
    fail(ckpt.dir(), ": checkpoint has more vision blocks than the vision config's depth = ", c.depth);
  return s;
}

void VitStack::prepare(const Compute& env) {
  for (Block& b : blocks_)
    for (Linear* m : {&b.qkv, &b.q, &b.k, &b.v, &b.out, &b.fc1, &b.fc2, &b.gate, &b.up, &b.down})
      if (m->weight().defined()) m->prepare(env);
}

void VitStack::forward(const Compute& env, float* x, int64_t N, const RopeTables* rope,
                       const std::vector<AttentionMask>& masks, const std::vector<int>& mask_of_block, VitWorkspace& ws,
                       const Observer* observer) const {
  const int64_t D = cfg_.dim, M = cfg_.mlp_dim, hd = cfg_.head_dim();
  const int heads = cfg_.num_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  if (masks.empty()) fail("vit: no attention mask");
  float* h = ws.normed.get(N * D);
  float* attn = ws.attn.get(N * D);
  float* tmp = ws.tmp.get(N * D);
  float* hidden = ws.hidden.get(N * M);
  for (size_t bi = 0; bi < blocks_.size(); ++bi) {
    if (bi > 0 && env.between_stages) env.between_stages();
    const Block& b = blocks_[bi];
    const AttentionMask& mask = masks[mask_of_block.empty() ? 0 : size_t(mask_of_block[bi])];
    b.norm1.apply(env, x, N, h);
    float *q, *k, *v;
    int64_t stride;
    if (b.qkv.weight().defined()) {  // fused: rows of [q | k | v]
      float* qkv = ws.qkv.get(N * 3 * D);
      b.qkv.forward(env, h, N, qkv);
      q = qkv, k = qkv + D, v = qkv + 2 * D, stride = 3 * D;
    } else {
      float* qs = ws.q.get(N * D);
      float* ks = ws.k.get(N * D);
      float* vs = ws.v.get(N * D);
      b.q.forward(env, h, N, qs);
      b.k.forward(env, h, N, ks);
      b.v.forward(env, h, N, vs);
      q = qs, k = ks, v = vs, stride = D;
    }
    if (rope) {
      apply_rope(q, N, stride, heads, int(hd), rope->cos.data(), rope->sin.data());
      apply_rope(k, N, stride, heads, int(hd), rope->cos.data(), rope->sin.data());
    }
    attention(env, q, stride, k, v, stride, N, N, heads, heads, int(hd), scale, mask, attn);
    b.out.forward(env, attn, N, tmp);
    add_inplace(x, tmp, N * D);
    b.norm2.apply(env, x, N, h);
    if (cfg_.gated_mlp) {
      float* up = ws.up.get(N * M);
      b.gate.forward(env, h, N, hidden);
      b.up.forward(env, h, N, up);
      activate_mul(env, cfg_.activation, hidden, up, N * M);
      b.down.forward(env, hidden, N, tmp);
    } else {
      b.fc1.forward(env, h, N, hidden);
      activate(env, cfg_.activation, hidden, N * M);
      b.fc2.forward(env, hidden, N, tmp);
    }
    add_inplace(x, tmp, N * D);
    observe(observer, "vision.layer", int(bi), x, N, D);
  }
}

}  // namespace vlm::nn
