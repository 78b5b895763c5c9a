// GEMM path of MatMulWeight::forward (prefill, vision encoders: many activation rows). Each task
// owns a panel of NR output features: for each KC-wide slice of K it dequantizes the panel to
// f32 in k-major order [KC][NR] (L1-sized) and sweeps all activation rows with an MR×NR
// register-blocked outer-product kernel, so dequantization is amortised over M rows.
// foreach_target.h re-includes this file once per SIMD target; the order below matters.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_gemm.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// clang-format on

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul_internal.h"

HWY_BEFORE_NAMESPACE();
namespace vlm::matmul_detail::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Every output is bias (or 0) plus its K products added by one FMA each in k order, whatever the
// blocking: results do not depend on the tile shape, the target or the thread count.
constexpr int64_t kKC = 128;                      // K slice: panel of KC·NR floats stays in L1
constexpr int kMR = 6;                            // activation rows per tile
constexpr int kNV = HWY_MAX_BYTES >= 64 ? 4 : 2;  // vectors per tile row: MR·NV accumulators (24 / 12)
constexpr int64_t kMaxNR = kNV * HWY_MAX_BYTES / 4;

// Tile c[MR, NR] (+)= x[MR, kc] · panel[kc, NR]; xr holds the MR activation row pointers.
template <int MR>
HWY_INLINE void Tile(const float* const* xr, const float* panel, int64_t kc, float* c, int64_t ldc, bool accumulate,
                     const float* bias) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  const int64_t NR = kNV * NL;
  VF acc[MR][kNV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < kNV; ++v)
      acc[i][v] = accumulate ? hn::LoadU(d, c + i * ldc + v * NL) : bias ? hn::LoadU(d, bias + v * NL) : hn::Zero(d);
  for (int64_t k = 0; k < kc; ++k) {
    VF w[kNV];
    for (int v = 0; v < kNV; ++v) w[v] = hn::Load(d, panel + k * NR + v * NL);
    for (int i = 0; i < MR; ++i) {
      const VF xb = hn::Set(d, xr[i][k]);
      for (int v = 0; v < kNV; ++v) acc[i][v] = hn::MulAdd(xb, w[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < kNV; ++v) hn::StoreU(acc[i][v], d, c + i * ldc + v * NL);
}

void GemmImpl(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  const int64_t NR = kNV * NL;
  const int64_t N = p.N, K = p.K;
  const int64_t panels = (N + NR - 1) / NR;
  pool.run(panels, [&](int64_t pi) {
    const int64_t n0 = pi * NR, nr = std::min(NR, N - n0);
    HWY_ALIGN float panel[kKC * kMaxNR];  // [KC][NR]
    float rowbuf[kKC];
    HWY_ALIGN float ctile[kMR * kMaxNR];  // MR × NR edge tile
    HWY_ALIGN float btile[kMaxNR];
    const float* bias_p = nullptr;
    if (bias) {
      std::fill(btile, btile + NR, 0.f);
      std::copy(bias + n0, bias + n0 + nr, btile);
      bias_p = btile;
    }
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int64_t kc = std::min(kKC, K - k0);
      for (int64_t r = 0; r < NR; ++r) {
        if (r < nr) {
          dequantize_range(p, n0 + r, k0, kc, rowbuf);
          for (int64_t k = 0; k < kc; ++k) panel[k * NR + r] = rowbuf[k];
        } else {
          for (int64_t k = 0; k < kc; ++k) panel[k * NR + r] = 0.f;
        }
      }
      const bool accumulate = k0 > 0;
      for (int64_t m0 = 0; m0 < M; m0 += kMR) {
        const int64_t mr = std::min<int64_t>(kMR, M - m0);
        const float* xr[kMR];
        for (int i = 0; i < kMR; ++i) xr[i] = x + (m0 + std::min<int64_t>(i, mr - 1)) * K + k0;
        float* c = y + m0 * N + n0;
        if (mr == kMR && nr == NR) {
          Tile<kMR>(xr, panel, kc, c, N, accumulate, bias_p);
          continue;
        }
        // Edge tile: compute a full tile in a buffer and copy the valid part.
        for (int64_t i = 0; i < mr && accumulate; ++i) std::copy(c + i * N, c + i * N + nr, ctile + i * NR);
        Tile<kMR>(xr, panel, kc, ctile, NR, accumulate, bias_p);
        for (int64_t i = 0; i < mr; ++i) std::copy(ctile + i * NR, ctile + i * NR + nr, c + i * N);
      }
    }
  });
}

}  // namespace vlm::matmul_detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace vlm::matmul_detail {
HWY_EXPORT(GemmImpl);
void gemm(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  HWY_DYNAMIC_DISPATCH(GemmImpl)(pool, p, x, M, y, bias);
}
}  // namespace vlm::matmul_detail
#endif
