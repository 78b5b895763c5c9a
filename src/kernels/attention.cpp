// Scaled dot-product attention (ops.h) with an online softmax over key tiles, vectorized over
// head_dim with Highway. One task per (query row, query head); only a tile of scores exists.
// This is the portable fallback: AVX-512 CPUs run the tiled kernel in attention_avx512.cpp.
// foreach_target.h re-includes this file once per SIMD target; the order below matters.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/attention_internal.h"
#include "kernels/ops.h"

HWY_BEFORE_NAMESPACE();
namespace vlm::ops_detail::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

constexpr int64_t kTile = 64;

HWY_INLINE float Dot(const float* a, const float* b, int64_t n) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  VF acc = hn::Zero(d);
  int64_t c = 0;
  for (; c + NL <= n; c += NL) acc = hn::MulAdd(hn::LoadU(d, a + c), hn::LoadU(d, b + c), acc);
  // Scalar tail: MaskedLoad may read whole vectors on 128-bit targets (hwy 1.0.3).
  float s = hn::GetLane(hn::SumOfLanes(d, acc));
  for (; c < n; ++c) s += a[c] * b[c];
  return s;
}

void AttentionImpl(ThreadPool& pool, const float* q, int64_t q_stride, const float* k, const float* v,
                   int64_t kv_stride, int64_t T, int64_t S, int q_heads, int kv_heads, int head_dim, float scale,
                   const AttentionMask& mask, float* out) {
  const int group = q_heads / kv_heads;
  pool.run(T * q_heads, [&](int64_t task) {
    const DF d;
    const int64_t NL = int64_t(hn::Lanes(d));
    const int64_t D = head_dim, Dp = (D + NL - 1) / NL * NL;
    const int64_t i = task / q_heads;
    const int h = int(task % q_heads);
    const int64_t kv_off = int64_t(h / group) * head_dim;
    thread_local std::vector<float> buf;
    buf.assign(size_t(2 * Dp), 0.f);
    float* qs = buf.data();  // query pre-multiplied by the softmax scale
    float* acc = qs + Dp;    // Σ p_j·v_j, padded to whole vectors
    const float* qi = q + i * q_stride + int64_t(h) * head_dim;
    for (int64_t c = 0; c < D; ++c) qs[c] = qi[c] * scale;
    int64_t lo, hi;
    mask.key_range(S, i, lo, hi);
    HWY_ALIGN float p[kTile];
    float running_max = -std::numeric_limits<float>::infinity();
    double running_sum = 0;
    for (int64_t j0 = lo; j0 < hi; j0 += kTile) {
      const int64_t n = std::min(hi, j0 + kTile) - j0;
      float tile_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        p[j] = Dot(qs, k + (j0 + j) * kv_stride + kv_off, D);
        tile_max = std::max(tile_max, p[j]);
      }
      const float new_max = std::max(running_max, tile_max);
      if (running_max != -std::numeric_limits<float>::infinity() && running_max != new_max) {
        const float correction = std::exp(running_max - new_max);
        running_sum *= correction;
        const VF cv = hn::Set(d, correction);
        for (int64_t c = 0; c < Dp; c += NL) hn::StoreU(hn::Mul(hn::LoadU(d, acc + c), cv), d, acc + c);
      }
      running_max = new_max;
      const VF mv = hn::Set(d, new_max);
      VF sv = hn::Zero(d);
      int64_t j = 0;
      for (; j + NL <= n; j += NL) {
        const VF e = hn::Exp(d, hn::Sub(hn::Load(d, p + j), mv));
        sv = hn::Add(sv, e);
        hn::Store(e, d, p + j);
      }
      running_sum += hn::GetLane(hn::SumOfLanes(d, sv));
      for (; j < n; ++j) {
        p[j] = std::exp(p[j] - new_max);
        running_sum += p[j];
      }
      for (j = 0; j < n; ++j) {
        const float* vj = v + (j0 + j) * kv_stride + kv_off;
        const VF pv = hn::Set(d, p[j]);
        int64_t c = 0;
        for (; c + NL <= D; c += NL)
          hn::StoreU(hn::MulAdd(pv, hn::LoadU(d, vj + c), hn::LoadU(d, acc + c)), d, acc + c);
        for (; c < D; ++c) acc[c] += p[j] * vj[c];
      }
    }
    const float inv = running_sum > 0 ? float(1.0 / running_sum) : 0.f;
    float* o = out + (i * q_heads + h) * head_dim;
    for (int64_t c = 0; c < D; ++c) o[c] = acc[c] * inv;
  });
}

}  // namespace vlm::ops_detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace vlm {
namespace ops_detail {
HWY_EXPORT(AttentionImpl);
}  // namespace ops_detail

void attention(const Compute& env, const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
               int64_t T, int64_t S, int q_heads, int kv_heads, int head_dim, float scale, const AttentionMask& mask,
               float* out) {
  if (q_heads <= 0 || kv_heads <= 0 || q_heads % kv_heads != 0 || head_dim <= 0)
    fail("attention: bad head configuration q_heads=", q_heads, " kv_heads=", kv_heads, " head_dim=", head_dim);
  if (T <= 0) return;
  if (env.counters) {  // QK^T and PV over the visible keys
    int64_t pairs = 0;
    for (int64_t i = 0, lo, hi; i < T; ++i) {
      mask.key_range(S, i, lo, hi);
      pairs += std::max<int64_t>(0, hi - lo);
    }
    env.count(4 * pairs * head_dim * q_heads);
  }
  if (ops_detail::attention_avx512(env.threads(), env.precision == Precision::kFast, q, q_stride, k, v, kv_stride, T, S,
                                   q_heads, kv_heads, head_dim, scale, mask, out))
    return;
  HWY_DYNAMIC_DISPATCH(ops_detail::AttentionImpl)
  (env.threads(), q, q_stride, k, v, kv_stride, T, S, q_heads, kv_heads, head_dim, scale, mask, out);
}
}  // namespace vlm
#endif
