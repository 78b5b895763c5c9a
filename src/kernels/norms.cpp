// Row-wise normalisations (RMSNorm, LayerNorm) and softmax (ops.h), vectorized with Highway.
// Reductions use several f32 vector accumulators, which is accurate to ~1e-7 relative for the
// row widths of these models (<= a few thousand) and matches the double-precision reference.
// foreach_target.h re-includes this file once per SIMD target; the order below matters.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/norms.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

#include <cmath>
#include <limits>

#include "core/thread_pool.h"
#include "kernels/ops.h"

HWY_BEFORE_NAMESPACE();
namespace vlm::ops_detail::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Σ (x[i] - c)² over a row.
HWY_INLINE float SumSquares(const float* x, int64_t n, float c) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  const VF cv = hn::Set(d, c);
  VF a0 = hn::Zero(d), a1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * NL <= n; i += 2 * NL) {
    const VF v0 = hn::Sub(hn::LoadU(d, x + i), cv), v1 = hn::Sub(hn::LoadU(d, x + i + NL), cv);
    a0 = hn::MulAdd(v0, v0, a0);
    a1 = hn::MulAdd(v1, v1, a1);
  }
  for (; i + NL <= n; i += NL) {
    const VF v = hn::Sub(hn::LoadU(d, x + i), cv);
    a0 = hn::MulAdd(v, v, a0);
  }
  double s = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1)));
  for (; i < n; ++i) s += double(x[i] - c) * double(x[i] - c);
  return float(s);
}

HWY_INLINE float Sum(const float* x, int64_t n) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  VF a = hn::Zero(d);
  int64_t i = 0;
  for (; i + NL <= n; i += NL) a = hn::Add(a, hn::LoadU(d, x + i));
  double s = hn::GetLane(hn::SumOfLanes(d, a));
  for (; i < n; ++i) s += x[i];
  return float(s);
}

// o = (x - c) · inv · (w + w_offset) + b
HWY_INLINE void Normalize(const float* x, const float* w, const float* b, float w_offset, int64_t n, float c, float inv,
                          float* o) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  const VF cv = hn::Set(d, c), iv = hn::Set(d, inv), wo = hn::Set(d, w_offset);
  int64_t i = 0;
  for (; i + NL <= n; i += NL) {
    const VF scale = hn::Mul(iv, hn::Add(hn::LoadU(d, w + i), wo));
    VF v = hn::Mul(hn::Sub(hn::LoadU(d, x + i), cv), scale);
    if (b) v = hn::Add(v, hn::LoadU(d, b + i));
    hn::StoreU(v, d, o + i);
  }
  for (; i < n; ++i) o[i] = (x[i] - c) * (inv * (w[i] + w_offset)) + (b ? b[i] : 0.f);
}

void RmsNormImpl(ThreadPool& pool, const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out,
                 bool one_plus_weight) {
  pool.parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float inv = 1.0f / std::sqrt(SumSquares(xr, dim, 0.f) / float(dim) + eps);
      Normalize(xr, w, nullptr, one_plus_weight ? 1.f : 0.f, dim, 0.f, inv, out + r * dim);
    }
  });
}

void LayerNormImpl(ThreadPool& pool, const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                   float eps, float* out) {
  pool.parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float mean = Sum(xr, dim) / float(dim);
      const float var = SumSquares(xr, dim, mean) / float(dim);
      Normalize(xr, w, b, 0.f, dim, mean, float(1.0 / std::sqrt(double(var) + eps)), out + r * dim);
    }
  });
}

// In place: p = softmax(p) over n values.
void SoftmaxRow(float* p, int64_t n) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  float mx = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  if (n >= NL) {
    VF m = hn::LoadU(d, p);
    for (i = NL; i + NL <= n; i += NL) m = hn::Max(m, hn::LoadU(d, p + i));
    mx = hn::GetLane(hn::MaxOfLanes(d, m));
  }
  for (; i < n; ++i) mx = std::max(mx, p[i]);
  const VF mv = hn::Set(d, mx);
  VF sv = hn::Zero(d);
  for (i = 0; i + NL <= n; i += NL) {
    const VF e = hn::Exp(d, hn::Sub(hn::LoadU(d, p + i), mv));
    sv = hn::Add(sv, e);
    hn::StoreU(e, d, p + i);
  }
  double sum = hn::GetLane(hn::SumOfLanes(d, sv));
  for (; i < n; ++i) {
    p[i] = std::exp(p[i] - mx);
    sum += p[i];
  }
  const VF inv = hn::Set(d, float(1.0 / sum));
  for (i = 0; i + NL <= n; i += NL) hn::StoreU(hn::Mul(hn::LoadU(d, p + i), inv), d, p + i);
  for (; i < n; ++i) p[i] *= float(1.0 / sum);
}

void SoftmaxRowsImpl(ThreadPool& pool, float* x, int64_t rows, int64_t cols) {
  pool.parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, cols)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) SoftmaxRow(x + r * cols, cols);
  });
}

}  // namespace vlm::ops_detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace vlm {
namespace ops_detail {
HWY_EXPORT(RmsNormImpl);
HWY_EXPORT(LayerNormImpl);
HWY_EXPORT(SoftmaxRowsImpl);
}  // namespace ops_detail

void rms_norm(const Compute& env, const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out,
              bool one_plus_weight) {
  HWY_DYNAMIC_DISPATCH(ops_detail::RmsNormImpl)(env.threads(), x, w, rows, dim, eps, out, one_plus_weight);
}
void layer_norm(const Compute& env, const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                float eps, float* out) {
  HWY_DYNAMIC_DISPATCH(ops_detail::LayerNormImpl)(env.threads(), x, w, b, rows, dim, eps, out);
}
void softmax_rows(const Compute& env, float* x, int64_t rows, int64_t cols) {
  HWY_DYNAMIC_DISPATCH(ops_detail::SoftmaxRowsImpl)(env.threads(), x, rows, cols);
}
}  // namespace vlm
#endif
