// GEMV path of MatMulWeight::forward (decode: few activation rows). Weights are streamed once
// per block of activation rows straight from their storage format; quantized rows use the
// factorisation x·(s·q + b) = s·(x·q) + b·Σx per group, so only integer unpacking and one FMA
// per weight remain in the inner loop.
// foreach_target.h re-includes this file once per SIMD target; the order below matters.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_gemv.cpp"
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
using DU = hn::RebindToUnsigned<DF>;
using DI = hn::RebindToSigned<DF>;

constexpr int kRowBlock = 4;  // weight rows per step: independent FMA chains sharing x loads
constexpr int kMaxMB = 3;     // activation rows per pass over the weights

enum class WFmt { kF32, kBF16, kF16 };

template <WFmt F>
HWY_INLINE VF LoadW(DF d, const void* base, int64_t i) {
  if constexpr (F == WFmt::kF32) {
    return hn::LoadU(d, static_cast<const float*>(base) + i);
  } else if constexpr (F == WFmt::kBF16) {
    const hn::Rebind<hwy::bfloat16_t, DF> dh;
    return hn::PromoteTo(d, hn::LoadU(dh, static_cast<const hwy::bfloat16_t*>(base) + i));
  } else {
    const hn::Rebind<hwy::float16_t, DF> dh;
    return hn::PromoteTo(d, hn::LoadU(dh, static_cast<const hwy::float16_t*>(base) + i));
  }
}

template <WFmt F>
HWY_INLINE float ScalarW(const void* base, int64_t i) {
  if constexpr (F == WFmt::kF32) return static_cast<const float*>(base)[i];
  if constexpr (F == WFmt::kBF16) return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
  return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
}

// y[m, r] for r < R, m < MB, with w at the first of the R rows; x rows have stride K, y rows N.
template <WFmt F, int MB, int R>
HWY_INLINE void DenseRows(const void* w, int64_t K, const float* x, float* y, int64_t N, const float* bias) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  VF acc[R][MB];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) acc[r][m] = hn::Zero(d);
  int64_t k = 0;
  for (; k + NL <= K; k += NL) {
    VF xv[MB];
    for (int m = 0; m < MB; ++m) xv[m] = hn::LoadU(d, x + m * K + k);
    for (int r = 0; r < R; ++r) {
      const VF wv = LoadW<F>(d, w, r * K + k);
      for (int m = 0; m < MB; ++m) acc[r][m] = hn::MulAdd(wv, xv[m], acc[r][m]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int m = 0; m < MB; ++m) {
      float s = hn::GetLane(hn::SumOfLanes(d, acc[r][m]));
      for (int64_t kk = k; kk < K; ++kk) s += ScalarW<F>(w, r * K + kk) * x[m * K + kk];
      y[m * N + r] = s + (bias ? bias[r] : 0.f);
    }
  }
}

template <WFmt F>
HWY_INLINE const void* RowPtr(const void* w, int64_t n, int64_t K) {
  return static_cast<const char*>(w) + n * K * int64_t(F == WFmt::kF32 ? 4 : 2);
}

template <WFmt F, int MB>
void DenseRange(const void* w, int64_t K, const float* x, int64_t n0, int64_t n1, float* y, int64_t N,
                const float* bias) {
  int64_t n = n0;
  for (; n + kRowBlock <= n1; n += kRowBlock)
    DenseRows<F, MB, kRowBlock>(RowPtr<F>(w, n, K), K, x, y + n, N, bias ? bias + n : nullptr);
  for (; n < n1; ++n) DenseRows<F, MB, 1>(RowPtr<F>(w, n, K), K, x, y + n, N, bias ? bias + n : nullptr);
}

template <int MB>
void DenseDispatch(const MatMulWeight::Impl& p, const float* x, int64_t n0, int64_t n1, float* y, const float* bias) {
  switch (p.w.dtype()) {
    case DType::BF16: return DenseRange<WFmt::kBF16, MB>(p.w.raw(), p.K, x, n0, n1, y, p.N, bias);
    case DType::F16: return DenseRange<WFmt::kF16, MB>(p.w.raw(), p.K, x, n0, n1, y, p.N, bias);
    default: return DenseRange<WFmt::kF32, MB>(p.w.raw(), p.K, x, n0, n1, y, p.N, bias);
  }
}

// Activations rearranged to match the lanes of packed words: within each block of NL words
// (NL·E values, E = 32/bits values per word), xp[j·NL + l] = x[l·E + j], so that shifting every
// lane of the loaded words by j·bits yields the values that multiply xp[j·NL .. j·NL + NL).
struct QuantCtx {
  const MatMulWeight::Impl* p;
  int64_t wpr;      // words per row
  int64_t wpg;      // words per group
  int64_t nblk;     // full NL-word blocks per row
  int64_t groups;   // groups per row
  const float* x;   // [M, K] original activations (tails)
  const float* xp;  // [M, K] lane-permuted activations
  const float* xs;  // [M, groups] per-group sums of x
};

// n values of a float buffer of type t, starting at element i, to f32.
HWY_INLINE void ToFloats(DType t, const void* base, int64_t i, int64_t n, float* out) {
  const DF d;
  const int64_t NL = int64_t(hn::Lanes(d));
  int64_t g = 0;
  if (t == DType::F32) {
    std::copy_n(static_cast<const float*>(base) + i, n, out);
    return;
  }
  if (t == DType::BF16) {
    for (; g + NL <= n; g += NL) hn::StoreU(LoadW<WFmt::kBF16>(d, base, i + g), d, out + g);
  } else {
    for (; g + NL <= n; g += NL) hn::StoreU(LoadW<WFmt::kF16>(d, base, i + g), d, out + g);
  }
  for (; g < n; ++g) out[g] = load_float(t, base, i + g);
}

// Converts scales/biases of row r to f32 (they are tiny next to the packed values).
HWY_INLINE void RowScales(const MatMulWeight::Impl& p, int64_t r, int64_t groups, float* s, float* b) {
  ToFloats(p.scales.dtype(), p.scales.raw(), r * groups, groups, s);
  ToFloats(p.biases.dtype(), p.biases.raw(), r * groups, groups, b);
}

template <int BITS, int MB, int R>
HWY_INLINE void QuantRows(const QuantCtx& c, int64_t n, float* y, const float* bias, float* sbuf, float* bbuf) {
  constexpr int E = 32 / BITS;
  const DF d;
  const DU du;
  const DI di;
  const int64_t NL = int64_t(hn::Lanes(d));
  const int64_t K = c.p->K, N = c.p->N, G = c.p->group;
  const int64_t sstride = c.groups + NL;  // padded: lane lookups may read past the last group
  const uint32_t* rows[R];
  for (int r = 0; r < R; ++r) {
    rows[r] = c.p->w.data<uint32_t>() + (n + r) * c.wpr;
    RowScales(*c.p, n + r, c.groups, sbuf + r * sstride, bbuf + r * c.groups);
  }
  // Lane l of a block belongs to group (w0 + l) / wpg; blocks are aligned to groups.
  const bool lookup = c.wpg < NL;
  HWY_ALIGN int32_t idx_lanes[HWY_MAX_BYTES / 4];
  for (int64_t l = 0; l < NL; ++l) idx_lanes[l] = int32_t(lookup ? l / c.wpg : 0);
  const auto idx = hn::SetTableIndices(d, idx_lanes);
  const auto mask = hn::Set(du, (1u << BITS) - 1u);

  VF tot[R][MB];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) tot[r][m] = hn::Zero(d);
  for (int64_t blk = 0; blk < c.nblk; ++blk) {
    const int64_t w0 = blk * NL;
    VF sv[R];
    hn::Vec<DU> wv[R];
    for (int r = 0; r < R; ++r) {
      const float* s = sbuf + r * sstride + w0 / c.wpg;
      sv[r] = lookup ? hn::TableLookupLanes(hn::LoadU(d, s), idx) : hn::Set(d, *s);
      wv[r] = hn::LoadU(du, rows[r] + w0);
    }
    VF tmp[R][MB];
    for (int r = 0; r < R; ++r)
      for (int m = 0; m < MB; ++m) tmp[r][m] = hn::Zero(d);
    const float* xb = c.xp + w0 * E;
    for (int j = 0; j < E; ++j) {
      VF xv[MB];
      for (int m = 0; m < MB; ++m) xv[m] = hn::LoadU(d, xb + m * K + j * NL);
      for (int r = 0; r < R; ++r) {
        const auto bitsv = j == 0 ? wv[r] : hn::ShiftRightSame(wv[r], j * BITS);
        const VF q = hn::ConvertTo(d, hn::BitCast(di, j == E - 1 ? bitsv : hn::And(bitsv, mask)));
        for (int m = 0; m < MB; ++m) tmp[r][m] = hn::MulAdd(q, xv[m], tmp[r][m]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int m = 0; m < MB; ++m) tot[r][m] = hn::MulAdd(tmp[r][m], sv[r], tot[r][m]);
  }
  const int64_t ktail = c.nblk * NL * E;
  for (int r = 0; r < R; ++r) {
    const float* s = sbuf + r * sstride;
    const float* b = bbuf + r * c.groups;
    for (int m = 0; m < MB; ++m) {
      float acc = hn::GetLane(hn::SumOfLanes(d, tot[r][m]));
      const float* xm = c.x + m * K;
      for (int64_t k = ktail; k < K; ++k) acc += s[k / G] * (float(mlx_unpack(rows[r], k, BITS)) * xm[k]);
      const float* xs = c.xs + m * c.groups;
      for (int64_t g = 0; g < c.groups; ++g) acc += b[g] * xs[g];
      y[m * N + n + r] = acc + (bias ? bias[n + r] : 0.f);
    }
  }
}

template <int BITS, int MB>
void QuantRange(const QuantCtx& c, int64_t n0, int64_t n1, float* y, const float* bias) {
  const int64_t NL = int64_t(hn::Lanes(DF()));
  thread_local std::vector<float> sbuf, bbuf;
  sbuf.resize(size_t(kRowBlock * (c.groups + NL)));
  bbuf.resize(size_t(kRowBlock * c.groups));
  int64_t n = n0;
  for (; n + kRowBlock <= n1; n += kRowBlock) QuantRows<BITS, MB, kRowBlock>(c, n, y, bias, sbuf.data(), bbuf.data());
  for (; n < n1; ++n) QuantRows<BITS, MB, 1>(c, n, y, bias, sbuf.data(), bbuf.data());
}

template <int MB>
void QuantDispatch(const QuantCtx& c, int64_t n0, int64_t n1, float* y, const float* bias) {
  switch (c.p->bits) {
    case 2: return QuantRange<2, MB>(c, n0, n1, y, bias);
    case 4: return QuantRange<4, MB>(c, n0, n1, y, bias);
    default: return QuantRange<8, MB>(c, n0, n1, y, bias);
  }
}

// Bit widths that straddle words (3, 5, 6) and unusual group sizes: dequantize each row to f32.
template <int MB>
void GenericRange(const MatMulWeight::Impl& p, const float* x, int64_t n0, int64_t n1, float* y, const float* bias) {
  thread_local std::vector<float> row;
  row.resize(size_t(p.K));
  for (int64_t n = n0; n < n1; ++n) {
    dequantize_range(p, n, 0, p.K, row.data());
    DenseRows<WFmt::kF32, MB, 1>(row.data(), p.K, x, y + n, p.N, bias ? bias + n : nullptr);
  }
}

template <int MB>
void RunBlock(const MatMulWeight::Impl& p, const QuantCtx* qc, const float* x, int64_t n0, int64_t n1, float* y,
              const float* bias) {
  if (!p.quantized) return DenseDispatch<MB>(p, x, n0, n1, y, bias);
  if (qc) return QuantDispatch<MB>(*qc, n0, n1, y, bias);
  GenericRange<MB>(p, x, n0, n1, y, bias);
}

void GemvImpl(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t NL = int64_t(hn::Lanes(DF()));
  const int64_t K = p.K, N = p.N;
  QuantCtx qc{};
  std::vector<float> xp, xs;
  bool fast_quant = false;
  if (p.quantized && 32 % p.bits == 0 && (int64_t(p.group) * p.bits) % 32 == 0) {
    qc.wpg = int64_t(p.group) * p.bits / 32;
    fast_quant = qc.wpg >= NL ? qc.wpg % NL == 0 : NL % qc.wpg == 0;
  }
  if (fast_quant) {
    const int64_t E = 32 / p.bits;
    qc.p = &p;
    qc.wpr = p.w.dim(1);
    qc.nblk = qc.wpr / NL;
    qc.groups = K / p.group;
    xp.resize(size_t(M * K));
    xs.resize(size_t(M * qc.groups));
    for (int64_t m = 0; m < M; ++m) {
      const float* xm = x + m * K;
      float* pm = xp.data() + m * K;
      for (int64_t blk = 0; blk < qc.nblk; ++blk) {
        const int64_t base = blk * NL * E;
        for (int64_t l = 0; l < NL; ++l)
          for (int64_t j = 0; j < E; ++j) pm[base + j * NL + l] = xm[base + l * E + j];
      }
      std::copy(xm + qc.nblk * NL * E, xm + K, pm + qc.nblk * NL * E);
      for (int64_t g = 0; g < qc.groups; ++g) {
        double s = 0;
        for (int64_t k = g * p.group; k < (g + 1) * p.group; ++k) s += xm[k];
        xs[size_t(m * qc.groups + g)] = float(s);
      }
    }
    qc.x = x;
    qc.xp = xp.data();
    qc.xs = xs.data();
  }
  const QuantCtx* qcp = fast_quant ? &qc : nullptr;
  const int64_t blocks = (N + kRowBlock - 1) / kRowBlock;
  pool.parallel_for(blocks, 8, [&](int64_t b0, int64_t b1) {
    const int64_t n0 = b0 * kRowBlock, n1 = std::min(N, b1 * kRowBlock);
    for (int64_t m = 0; m < M;) {
      const int64_t left = M - m;
      const int mb = left == 4 ? 2 : int(std::min<int64_t>(kMaxMB, left));
      // Offsetting x and y by m rows lets the kernels index rows from 0.
      QuantCtx sub = qc;
      if (qcp) {
        sub.x += m * K;
        sub.xp += m * K;
        sub.xs += m * qc.groups;
      }
      const QuantCtx* sp = qcp ? &sub : nullptr;
      const float* xm = x + m * K;
      float* ym = y + m * N;
      if (mb == 1) RunBlock<1>(p, sp, xm, n0, n1, ym, bias);
      if (mb == 2) RunBlock<2>(p, sp, xm, n0, n1, ym, bias);
      if (mb == 3) RunBlock<3>(p, sp, xm, n0, n1, ym, bias);
      m += mb;
    }
  });
}

int64_t ChosenTarget() {
  return HWY_TARGET;
}

}  // namespace vlm::matmul_detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace vlm::matmul_detail {
HWY_EXPORT(GemvImpl);
HWY_EXPORT(ChosenTarget);
int64_t chosen_simd_target() {
  return HWY_DYNAMIC_DISPATCH(ChosenTarget)();
}
void gemv(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  HWY_DYNAMIC_DISPATCH(GemvImpl)(pool, p, x, M, y, bias);
}
}  // namespace vlm::matmul_detail
#endif
