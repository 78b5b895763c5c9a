// Element-wise activations and arithmetic (ops.h), vectorized with Highway. Sigmoid-type
// activations use x / (1 + e^-a); gelu_tanh uses the identity 0.5·(1 + tanh(u)) = 1 / (1 + e^-2u),
// and gelu_erf a rational-exponential erfc approximation (relative error ~1e-7) so that Φ(x) is
// accurate in relative terms even in the far negative tail.
// foreach_target.h re-includes this file once per SIMD target; the order below matters.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/activations.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

#include "core/thread_pool.h"
#include "kernels/ops.h"

HWY_BEFORE_NAMESPACE();
namespace vlm::ops_detail::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// x / (1 + e^(-a·x')) with the exponent clamped where e^ would overflow (result is then ~0).
HWY_INLINE VF DivOnePlusExp(DF d, VF x, VF neg_arg) {
  const VF e = hn::Exp(d, hn::Min(neg_arg, hn::Set(d, 88.f)));
  return hn::Div(x, hn::Add(hn::Set(d, 1.f), e));
}

struct Silu {
  HWY_INLINE VF operator()(DF d, VF x) const { return DivOnePlusExp(d, x, hn::Neg(x)); }
};
struct QuickGelu {
  HWY_INLINE VF operator()(DF d, VF x) const { return DivOnePlusExp(d, x, hn::Mul(x, hn::Set(d, -1.702f))); }
};
struct GeluTanh {
  HWY_INLINE VF operator()(DF d, VF x) const {
    // -2u = -2·sqrt(2/π)·(x + 0.044715·x³)
    const VF x2 = hn::Mul(x, x);
    const VF inner = hn::MulAdd(hn::Mul(x2, hn::Set(d, 0.044715f)), x, x);
    return DivOnePlusExp(d, x, hn::Mul(inner, hn::Set(d, -1.5957691216057308f)));
  }
};
struct GeluErf {
  HWY_INLINE VF operator()(DF d, VF x) const {
    // erfc(z), z = |x|/√2 >= 0: t·exp(-z² + P(t)), t = 1 / (1 + z/2).
    const VF z = hn::Mul(hn::Abs(x), hn::Set(d, 0.70710678118654752f));
    const VF t = hn::Div(hn::Set(d, 1.f), hn::MulAdd(z, hn::Set(d, 0.5f), hn::Set(d, 1.f)));
    VF p = hn::Set(d, 0.17087277f);
    for (float c : {-0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f, 0.09678418f, 0.37409196f,
                    1.00002368f, -1.26551223f})
      p = hn::MulAdd(p, t, hn::Set(d, c));
    const VF arg = hn::Max(hn::NegMulAdd(z, z, p), hn::Set(d, -100.f));
    const VF half_erfc = hn::Mul(hn::Mul(t, hn::Exp(d, arg)), hn::Set(d, 0.5f));  // Φ(-|x|)
    const VF phi = hn::IfThenElse(hn::Lt(x, hn::Zero(d)), half_erfc, hn::Sub(hn::Set(d, 1.f), half_erfc));
    return hn::Mul(x, phi);
  }
};

// gate[i] = f(gate[i]) (* up[i] when up != nullptr), split across threads for long rows.
template <class F>
void Apply(ThreadPool& pool, float* HWY_RESTRICT x, const float* HWY_RESTRICT up, int64_t n) {
  pool.parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    const DF d;
    const int64_t NL = int64_t(hn::Lanes(d));
    const F f;
    int64_t i = b;
    for (; i + NL <= e; i += NL) {
      VF v = f(d, hn::LoadU(d, x + i));
      if (up) v = hn::Mul(v, hn::LoadU(d, up + i));
      hn::StoreU(v, d, x + i);
    }
    if (i < e) {  // tail through a padded buffer
      HWY_ALIGN float buf[HWY_MAX_BYTES / 4] = {};
      HWY_ALIGN float ubuf[HWY_MAX_BYTES / 4] = {};
      for (int64_t j = i; j < e; ++j) {
        buf[j - i] = x[j];
        if (up) ubuf[j - i] = up[j];
      }
      VF v = f(d, hn::Load(d, buf));
      if (up) v = hn::Mul(v, hn::Load(d, ubuf));
      hn::Store(v, d, buf);
      for (int64_t j = i; j < e; ++j) x[j] = buf[j - i];
    }
  });
}

void SiluImpl(ThreadPool& pool, float* x, const float* up, int64_t n) {
  Apply<Silu>(pool, x, up, n);
}
void QuickGeluImpl(ThreadPool& pool, float* x, const float* up, int64_t n) {
  Apply<QuickGelu>(pool, x, up, n);
}
void GeluTanhImpl(ThreadPool& pool, float* x, const float* up, int64_t n) {
  Apply<GeluTanh>(pool, x, up, n);
}
void GeluErfImpl(ThreadPool& pool, float* x, const float* up, int64_t n) {
  Apply<GeluErf>(pool, x, up, n);
}

void AddImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT y, int64_t n) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  int64_t i = 0;
  for (; i + NL <= n; i += NL) hn::StoreU(hn::Add(hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, x + i);
  for (; i < n; ++i) x[i] += y[i];
}

void ScaleImpl(float* x, float s, int64_t n) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  const VF sv = hn::Set(d, s);
  int64_t i = 0;
  for (; i + NL <= n; i += NL) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), sv), d, x + i);
  for (; i < n; ++i) x[i] *= s;
}

}  // namespace vlm::ops_detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace vlm {
namespace ops_detail {
HWY_EXPORT(SiluImpl);
HWY_EXPORT(QuickGeluImpl);
HWY_EXPORT(GeluTanhImpl);
HWY_EXPORT(GeluErfImpl);
HWY_EXPORT(AddImpl);
HWY_EXPORT(ScaleImpl);
}  // namespace ops_detail

void gelu_erf(const Compute& env, float* x, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ops_detail::GeluErfImpl)(env.threads(), x, nullptr, n);
}
void gelu_tanh(const Compute& env, float* x, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ops_detail::GeluTanhImpl)(env.threads(), x, nullptr, n);
}
void quick_gelu(const Compute& env, float* x, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ops_detail::QuickGeluImpl)(env.threads(), x, nullptr, n);
}
void silu(const Compute& env, float* x, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ops_detail::SiluImpl)(env.threads(), x, nullptr, n);
}
void silu_mul(const Compute& env, float* gate, const float* up, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ops_detail::SiluImpl)(env.threads(), gate, up, n);
}
void gelu_tanh_mul(const Compute& env, float* gate, const float* up, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ops_detail::GeluTanhImpl)(env.threads(), gate, up, n);
}
void add_inplace(float* x, const float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ops_detail::AddImpl)(x, y, n);
}
void scale_inplace(float* x, float s, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ops_detail::ScaleImpl)(x, s, n);
}
}  // namespace vlm
#endif
