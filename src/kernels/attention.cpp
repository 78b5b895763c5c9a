// Scaled dot-product attention (ops.h) with an online softmax over key tiles, vectorized over
// Highway; only a tile of scores per query exists at any time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/ops.h"

HWY_BEFORE_NAMESPACE();
namespace vlm::ops_detail::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

constexpr int64_t kTile = 64;

// Keys visible to query i: the contiguous range [lo, hi).
HWY_INLINE void KeyRange(const AttentionMask& mask, int64_t S, int64_t i, int64_t& lo, int64_t& hi) {
  if (!mask.segments.empty()) {
    auto it = std::upper_bound(mask.segments.begin(), mask.segments.end(), i);
    if (it == mask.segments.begin() || it == mask.segments.end()) {
      lo = hi = 0;  // query outside every segment sees nothing
      return;
    }
    hi = std::min<int64_t>(S, *it);
    lo = *(it - 1);
    return;
  }
  lo = 0;
  hi = S;
  if (mask.causal) hi = std::min<int64_t>(S, std::max(mask.q_offset + i + 1, mask.prefix));
}

// One task = a block of up to kQB queries of one head. Each key tile is transposed once
// ([head_dim][kTile]) so that the scores of a query against the whole tile come out of plain
// vector FMAs (no horizontal sums), and each value row loaded is applied to every query of the
// block. Keys outside a query's own range are masked within the tile.
constexpr int64_t kQB = 8;

struct QueryState {
  int64_t lo, hi;  // visible keys [lo, hi)
  float max;
  double sum;
};

void AttentionImpl(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride, int64_t T,
                   int64_t S, int q_heads, int kv_heads, int head_dim, float scale, const AttentionMask& mask,
                   float* out) {
  const int group = q_heads / kv_heads;
  const int64_t blocks = (T + kQB - 1) / kQB;
  thread_pool().run(blocks * q_heads, [&](int64_t task) {
    const DF d;
    const int64_t NL = int64_t(hn::Lanes(d));
    const float kNegInf = -std::numeric_limits<float>::infinity();
    const int64_t D = head_dim, Dp = (D + NL - 1) / NL * NL;
    const int64_t i0 = (task / q_heads) * kQB, nq = std::min(kQB, T - i0);
    const int h = int(task % q_heads);
    const int64_t kv_off = int64_t(h / group) * head_dim;
    thread_local std::vector<float> buf;
    buf.assign(size_t(2 * kQB * Dp + D * kTile + kQB * kTile + 16), 0.f);
    float* qs = buf.data() + (16 - (reinterpret_cast<uintptr_t>(buf.data()) / 4) % 16) % 16;  // 64-byte aligned
    // qs: [kQB][Dp] queries pre-multiplied by the scale
    float* acc = qs + kQB * Dp;  // [kQB][Dp] Σ p_j·v_j
    float* kt = acc + kQB * Dp;  // [D][kTile] transposed key tile
    float* sc = kt + D * kTile;  // [kQB][kTile] scores, then probabilities
    QueryState st[kQB];
    int64_t jlo = S, jhi = 0;
    for (int64_t qi = 0; qi < nq; ++qi) {
      const float* src = q + (i0 + qi) * q_stride + int64_t(h) * head_dim;
      for (int64_t c = 0; c < D; ++c) qs[qi * Dp + c] = src[c] * scale;
      KeyRange(mask, S, i0 + qi, st[qi].lo, st[qi].hi);
      st[qi].max = kNegInf;
      st[qi].sum = 0;
      if (st[qi].lo < st[qi].hi) {
        jlo = std::min(jlo, st[qi].lo);
        jhi = std::max(jhi, st[qi].hi);
      }
    }
    for (int64_t j0 = jlo; j0 < jhi; j0 += kTile) {
      const int64_t n = std::min(jhi, j0 + kTile) - j0;
      for (int64_t j = 0; j < n; ++j) {
        const float* kj = k + (j0 + j) * kv_stride + kv_off;
        for (int64_t c = 0; c < D; ++c) kt[c * kTile + j] = kj[c];
      }
      for (int64_t qi = 0; qi < nq; ++qi) {
        QueryState& s = st[qi];
        const int64_t a = std::max<int64_t>(0, s.lo - j0), b = std::min<int64_t>(n, s.hi - j0);
        if (a >= b) continue;
        float* p = sc + qi * kTile;
        for (int64_t jv = 0; jv < kTile; jv += NL) {  // scores of the whole tile, vector by vector
          VF sv = hn::Zero(d);
          for (int64_t c = 0; c < D; ++c) sv = hn::MulAdd(hn::Set(d, qs[qi * Dp + c]), hn::Load(d, kt + c * kTile + jv), sv);
          hn::Store(sv, d, p + jv);
        }
        float tile_max = kNegInf;
        for (int64_t j = a; j < b; ++j) tile_max = std::max(tile_max, p[j]);
        const float new_max = std::max(s.max, tile_max);
        if (s.max != kNegInf && s.max != new_max) {
          const float correction = std::exp(s.max - new_max);
          s.sum *= correction;
          const VF cv = hn::Set(d, correction);
          for (int64_t c = 0; c < Dp; c += NL) hn::Store(hn::Mul(hn::Load(d, acc + qi * Dp + c), cv), d, acc + qi * Dp + c);
        }
        s.max = new_max;
        const VF mv = hn::Set(d, new_max);
        for (int64_t jv = 0; jv < kTile; jv += NL)
          hn::Store(hn::Exp(d, hn::Max(hn::Sub(hn::Load(d, p + jv), mv), hn::Set(d, -100.f))), d, p + jv);
        for (int64_t j = 0; j < a; ++j) p[j] = 0.f;
        for (int64_t j = b; j < kTile; ++j) p[j] = 0.f;
        double sum = 0;
        for (int64_t j = a; j < b; ++j) sum += p[j];
        s.sum += sum;
      }
      for (int64_t j = 0; j < n; ++j) {
        const float* vj = v + (j0 + j) * kv_stride + kv_off;
        int64_t c = 0;
        for (; c + NL <= D; c += NL) {
          const VF vv = hn::LoadU(d, vj + c);
          for (int64_t qi = 0; qi < nq; ++qi) {
            float* a = acc + qi * Dp + c;
            hn::Store(hn::MulAdd(hn::Set(d, sc[qi * kTile + j]), vv, hn::Load(d, a)), d, a);
          }
        }
        for (; c < D; ++c)
          for (int64_t qi = 0; qi < nq; ++qi) acc[qi * Dp + c] += sc[qi * kTile + j] * vj[c];
      }
      // Queries that skipped this tile must not pick up its probabilities next time round.
      for (int64_t qi = 0; qi < nq; ++qi) std::fill(sc + qi * kTile, sc + (qi + 1) * kTile, 0.f);
    }
    for (int64_t qi = 0; qi < nq; ++qi) {
      const float inv = st[qi].sum > 0 ? float(1.0 / st[qi].sum) : 0.f;
      float* o = out + ((i0 + qi) * q_heads + h) * head_dim;
      for (int64_t c = 0; c < D; ++c) o[c] = acc[qi * Dp + c] * inv;
    }
  });
}

}  // namespace vlm::ops_detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace vlm {
namespace ops_detail {
HWY_EXPORT(AttentionImpl);
}  // namespace ops_detail

void attention(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride, int64_t T,
               int64_t S, int q_heads, int kv_heads, int head_dim, float scale, const AttentionMask& mask,
               float* out) {
  if (q_heads <= 0 || kv_heads <= 0 || q_heads % kv_heads != 0 || head_dim <= 0)
    fail("attention: bad head configuration q_heads=", q_heads, " kv_heads=", kv_heads, " head_dim=", head_dim);
  HWY_DYNAMIC_DISPATCH(ops_detail::AttentionImpl)(q, q_stride, k, v, kv_stride, T, S, q_heads, kv_heads, head_dim,
                                                  scale, mask, out);
}
}  // namespace vlm
#endif
