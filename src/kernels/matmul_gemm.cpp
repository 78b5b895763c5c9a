// GEMM path of MatMulWeight::forward (prefill, vision encoders: many activation rows), float32
// arithmetic, in the blocking of gemm_blocking.h: activations packed into MR-row tiles per K
// slice; each task converts its panel of NR output features to f32 in k-major order [KC][NR]
// (L1-sized) per slice and sweeps the packed tiles with an MR×NR register-blocked outer-product
// kernel, so conversion is amortised over the rows.
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
#include "kernels/gemm_blocking.h"
#include "kernels/matmul_internal.h"
#include "kernels/matmul_repack.h"

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
constexpr int64_t kMB = 1024;                     // activation rows packed at a time: the buffer stays <= kMB·K floats

// Tile dst[MR, NR] = (src or bias or 0) + a[kc][MR] · panel[kc, NR]; a is the tile's packed
// activations, src (kAccumulate) the tile's partial sums so far, NR floats per row.
template <bool kAccumulate>
HWY_INLINE void Tile(const float* HWY_RESTRICT a, const float* HWY_RESTRICT panel, int64_t kc, const float* src,
                     const float* bias, float* dst, int64_t ldd) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  const int64_t NR = kNV * NL;
  VF acc[kMR][kNV];
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v)
      acc[i][v] = kAccumulate ? hn::Load(d, src + i * NR + v * NL) : bias ? hn::Load(d, bias + v * NL) : hn::Zero(d);
  for (int64_t k = 0; k < kc; ++k) {
    VF w[kNV];
    for (int v = 0; v < kNV; ++v) w[v] = hn::Load(d, panel + k * NR + v * NL);
    for (int i = 0; i < kMR; ++i) {
      const VF xb = hn::Set(d, a[k * kMR + i]);
      for (int v = 0; v < kNV; ++v) acc[i][v] = hn::MulAdd(xb, w[v], acc[i][v]);
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v) hn::StoreU(acc[i][v], d, dst + i * ldd + v * NL);
}

// Rows [m0, m0 + mb) of x as K slices of tiles, each [kc][MR] (rows past the end are 0): the
// tile kernel then reads its activations in one contiguous stream instead of MR rows K apart,
// which missed the cache and the TLB on every line once K·MR floats outgrew L1.
void PackTile(const float* x, int64_t K, int64_t M, int64_t m0, int64_t tiles, int64_t t, float* packed) {
  const float* rows[kMR];
  for (int i = 0; i < kMR; ++i) rows[i] = m0 + t * kMR + i < M ? x + (m0 + t * kMR + i) * K : nullptr;
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    float* dst = packed + k0 * tiles * kMR + t * kc * kMR;
    for (int i = 0; i < kMR; ++i) {
      if (!rows[i]) {
        for (int64_t k = 0; k < kc; ++k) dst[k * kMR + i] = 0.f;
        continue;
      }
      for (int64_t k = 0; k < kc; ++k) dst[k * kMR + i] = rows[i][k0 + k];
    }
  }
}

// panel[k][r] = W[n0 + r][k0 + k] for k < kc, r < NR (0 past row nr). Dense f32 and bf16 weights
// gather 16 rows at a time; anything else converts row by row.
void FillPanel(const MatMulWeight::Impl& p, int64_t n0, int64_t nr, int64_t NR, int64_t k0, int64_t kc, float* panel) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  if (p.bf16_panels) {
    // Repacked bf16 (matmul_repack.h): pair j of rows [n0, n0 + NR) is contiguous (NR divides the
    // 64-row panel, k0 is even), so each pair row widens to two f32 rows with a shift and a mask.
    // Rows past nr read the panel's zero padding.
    const RepackedBf16& rb = *p.bf16_panels;
    const uint32_t* src =
        rb.panel(n0 / RepackedBf16::kPanelRows) + k0 / 2 * RepackedBf16::kPanelRows + n0 % RepackedBf16::kPanelRows;
    const auto high = hn::Set(du, 0xFFFF0000u);
    for (int64_t k = 0; k < kc; k += 2, src += RepackedBf16::kPanelRows)
      for (int64_t r = 0; r < NR; r += NL) {
        const auto pair = hn::LoadU(du, src + r);
        hn::Store(hn::BitCast(d, hn::ShiftLeft<16>(pair)), d, panel + k * NR + r);
        if (k + 1 < kc) hn::Store(hn::BitCast(d, hn::And(pair, high)), d, panel + (k + 1) * NR + r);
      }
    return;
  }
  const DType dt = p.quantized ? DType::U32 : p.w.dtype();
  const bool bf16_pairs = dt == DType::BF16 && p.K % 2 == 0 && k0 % 2 == 0 && kc % 2 == 0 &&
                          reinterpret_cast<uintptr_t>(p.w.raw()) % 4 == 0;
  int64_t r0 = 0;
  if (dt == DType::F32 || bf16_pairs) {
    // Row r's element k0 + k: index r·K (f32) or r·K/2 (bf16 pairs as 32-bit words).
    const int64_t stride = dt == DType::F32 ? p.K : p.K / 2;
    const auto idx = hn::Mul(hn::Iota(di, 0), hn::Set(di, int32_t(stride)));
    for (; r0 + NL <= nr; r0 += NL) {
      if (dt == DType::F32) {
        const float* base = p.w.data<float>() + (n0 + r0) * p.K + k0;
        for (int64_t k = 0; k < kc; ++k) hn::Store(hn::GatherIndex(d, base + k, idx), d, panel + k * NR + r0);
        continue;
      }
      const uint32_t* base = reinterpret_cast<const uint32_t*>(p.w.data<uint16_t>() + (n0 + r0) * p.K + k0);
      const auto high = hn::Set(du, 0xFFFF0000u);
      for (int64_t k = 0; k < kc; k += 2) {
        const auto pair = hn::GatherIndex(du, base + k / 2, idx);
        hn::Store(hn::BitCast(d, hn::ShiftLeft<16>(pair)), d, panel + k * NR + r0);
        hn::Store(hn::BitCast(d, hn::And(pair, high)), d, panel + (k + 1) * NR + r0);
      }
    }
  }
  float rowbuf[kKC];
  for (int64_t r = r0; r < NR; ++r) {
    if (r < nr) {
      dequantize_range(p, n0 + r, k0, kc, rowbuf);
      for (int64_t k = 0; k < kc; ++k) panel[k * NR + r] = rowbuf[k];
    } else {
      for (int64_t k = 0; k < kc; ++k) panel[k * NR + r] = 0.f;
    }
  }
}

void GemmImpl(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  const DF d;
  const int64_t NR = kNV * int64_t(hn::Lanes(d));
  const int64_t K = p.K;
  blocked_gemm<float, float>(
      pool, GemmBlocking{K, kKC, NR, kMR, kMB}, M, p.N, y, bias,
      [&](int64_t m0, int64_t tiles, int64_t t, float* packed) { PackTile(x, K, M, m0, tiles, t, packed); },
      [&](int64_t n0, int64_t nr, int64_t k0, int64_t kc, float* panel) { FillPanel(p, n0, nr, NR, k0, kc, panel); },
      [](bool accumulate, const float* a, const float* panel, int64_t kc, const float* src, const float* b, float* dst,
         int64_t ldd) { (accumulate ? Tile<true> : Tile<false>)(a, panel, kc, src, b, dst, ldd); });
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
