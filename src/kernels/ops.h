// Element-wise, normalisation, positional and attention kernels on contiguous float32 rows.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "core/compute.h"

namespace vlm {

// out[m, :] = x[m, :] / sqrt(mean(x²) + eps) * w   (Gemma: * (1 + w) when `one_plus_weight`).
void rms_norm(const Compute& env, const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out,
              bool one_plus_weight = false);
// out[m, :] = (x - mean) / sqrt(var + eps) * w + b   (biased variance, as torch).
void layer_norm(const Compute& env, const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                float eps, float* out);

void gelu_erf(const Compute& env, float* x, int64_t n);    // x·Φ(x), exact
void gelu_tanh(const Compute& env, float* x, int64_t n);   // tanh approximation ("gelu_pytorch_tanh")
void quick_gelu(const Compute& env, float* x, int64_t n);  // x·sigmoid(1.702x)
void silu(const Compute& env, float* x, int64_t n);        // x·sigmoid(x)
// gate[i] = silu(gate[i]) * up[i]  /  gelu_tanh(gate[i]) * up[i]
void silu_mul(const Compute& env, float* gate, const float* up, int64_t n);
void gelu_tanh_mul(const Compute& env, float* gate, const float* up, int64_t n);
void add_inplace(float* x, const float* y, int64_t n);
void scale_inplace(float* x, float s, int64_t n);
void softmax_rows(const Compute& env, float* x, int64_t rows, int64_t cols);

// Rotary embedding, "rotate half" convention: for each of `heads` heads of width `head_dim`
// in row t, x = x·cos[t] + rotate_half(x)·sin[t], with cos/sin tables [rows, head_dim].
// `row_stride` is the distance (in floats) between consecutive rows of x.
void apply_rope(float* x, int64_t rows, int64_t row_stride, int heads, int head_dim, const float* cos,
                const float* sin);

// Which keys a query may attend to. Query i sits at absolute key position q_offset + i.
struct AttentionMask {
  bool causal = true;
  int64_t q_offset = 0;
  int64_t prefix = 0;  // keys < prefix are visible to every query (prefix-LM, bidirectional)
  // Block-diagonal (non-causal) attention: segment boundaries [0, b1, b2, ..., n]; a query sees
  // only the keys of its own segment. Empty = no segments.
  std::vector<int64_t> segments;
  // Sliding window (Gemma 3 local layers): when > 0, a query at absolute position p = q_offset + i
  // additionally sees only keys j > p - window, i.e. (p - window, p] together with `causal`. It
  // hides old prefix keys too.
  int64_t window = 0;
  // Bidirectional blocks (Gemma 3 images): sorted, disjoint [start, end) key ranges; a query
  // inside one also sees the whole block, whatever `causal` and `window` say.
  std::vector<std::array<int64_t, 2>> blocks;

  // Keys visible to query i among S keys: the contiguous range [lo, hi) (empty when lo >= hi).
  void key_range(int64_t S, int64_t i, int64_t& lo, int64_t& hi) const {
    const int64_t p = q_offset + i;
    lo = 0;
    hi = S;
    if (!segments.empty()) {
      auto it = std::upper_bound(segments.begin(), segments.end(), i);
      if (it == segments.begin() || it == segments.end()) {
        lo = hi = 0;  // a query outside every segment sees nothing
        return;
      }
      lo = *(it - 1);
      hi = std::min<int64_t>(S, *it);
    } else if (causal) {
      hi = std::min<int64_t>(S, std::max(p + 1, prefix));
    }
    if (window > 0) lo = std::max(lo, p - window + 1);
    for (const auto& b : blocks)
      if (b[0] <= p && p < b[1]) {
        lo = std::min(lo, b[0]);
        hi = std::max(hi, std::min(S, b[1]));
      }
  }
};

// Scaled dot-product attention with grouped-query heads.
// q: [T, q_heads, head_dim] with row stride q_stride; k, v: [S, kv_heads, head_dim] with row
// strides kv_stride; out: [T, q_heads, head_dim] contiguous. Query head h uses kv head
// h / (q_heads / kv_heads). Computed with an online softmax over key tiles, so no more than a
// tile of scores exists at a time. env.precision: kExact computes in float32 (summation order
// differs from a plain loop, ~1e-7 relative); kFast rounds Q, K, P and V to bf16 for the dot
// products (f32 accumulation and softmax) when there are >= 16 query positions, and is float32
// for fewer (decode reads K/V once; rounding would not make it faster).
void attention(const Compute& env, const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
               int64_t T, int64_t S, int q_heads, int kv_heads, int head_dim, float scale, const AttentionMask& mask,
               float* out);

}  // namespace vlm
