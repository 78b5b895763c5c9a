// int8 GEMM (MatMulPrecision::kInt8, many activation rows), see matmul_int8.h. Each task owns a
// panel of 32 output features: per K slice it unpacks their q values to bytes laid out
// [k/4][32][4] (what vpdpbusd wants as its unsigned operand) and sweeps all activation rows with
// an MR×32 tile. Integer sums run over one group, then are scaled into float accumulators:
// acc += float(Σ q·xq)·s_w·s_x + b_w·Σx.
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul_int8.h"

namespace vlm::matmul_detail {

#ifdef VLM_X86_KERNELS
namespace {

#define VLM_PACK_TARGET __attribute__((target("bmi2")))

constexpr int64_t kNR = 32;   // output features per panel (two zmm)
constexpr int kMR = 6;        // activation rows per tile: 12 int + 12 float accumulators
constexpr int64_t kKC = 512;  // K slice (multiple of the group after rounding down)

struct Panel {
  int64_t kc = 0, G = 0;
  alignas(64) uint8_t q[kKC * kNR];    // [kc/4][32][4]
  alignas(64) float s[kKC / 16][kNR];  // per group in the slice
  alignas(64) float b[kKC / 16][kNR];
};

// One packed row into panel column `out` (stride kNR words): each run of 4 values (4·BITS bits)
// spreads into the 4 bytes of one panel word.
template <int BITS>
VLM_PACK_TARGET inline void pack_row(const uint32_t* row, int64_t words, uint32_t* out) {
  constexpr int kRuns = 8 / BITS;
  constexpr uint32_t kSpread = BITS == 4 ? 0x0F0F0F0Fu : 0x03030303u;
  for (int64_t w = 0; w < words; ++w)
    for (int j = 0; j < kRuns; ++j)
      out[(w * kRuns + j) * kNR] = BITS == 8 ? row[w] : _pdep_u32(row[w] >> (j * 4 * BITS), kSpread);
}

// Unpacks rows n0.. (nr of them, rest zero) for columns [k0, k0 + kc) into the panel.
VLM_PACK_TARGET void pack_panel(const MatMulWeight::Impl& p, int64_t n0, int64_t nr, int64_t k0, int64_t kc,
                                Panel& pn) {
  const int bits = p.bits;
  const int64_t groups = p.K / p.group, g0 = k0 / p.group, ng = kc / p.group;
  pn.kc = kc;
  pn.G = p.group;
  for (int64_t r = 0; r < kNR; ++r) {
    if (r >= nr) {
      for (int64_t k = 0; k < kc; ++k) pn.q[(k / 4) * kNR * 4 + r * 4 + k % 4] = 0;
      for (int64_t g = 0; g < ng; ++g) pn.s[g][r] = pn.b[g][r] = 0.f;
      continue;
    }
    const uint32_t* row = p.w.data<uint32_t>() + (n0 + r) * p.w.dim(1) + k0 * bits / 32;
    uint32_t* out = reinterpret_cast<uint32_t*>(pn.q) + r;
    const int64_t words = kc * bits / 32;
    if (bits == 2) pack_row<2>(row, words, out);
    if (bits == 4) pack_row<4>(row, words, out);
    if (bits == 8) pack_row<8>(row, words, out);
    for (int64_t g = 0; g < ng; ++g) {
      pn.s[g][r] = load_float(p.scales.dtype(), p.scales.raw(), (n0 + r) * groups + g0 + g);
      pn.b[g][r] = load_float(p.biases.dtype(), p.biases.raw(), (n0 + r) * groups + g0 + g);
    }
  }
}

// c[MR, 32] (+)= rows xq[MR] (int8, this slice) · panel; sx/xs point at the slice's first group.
VLM_AVX512_VNNI void tile(const Panel& pn, const int8_t* const* xq, const float* const* sx, const float* const* xs,
                          float* c, int64_t ldc, bool accumulate, const float* bias) {
  __m512 accf[kMR][2];
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < 2; ++v)
      accf[i][v] = accumulate ? _mm512_loadu_ps(c + i * ldc + v * 16)
                   : bias     ? _mm512_loadu_ps(bias + v * 16)
                              : _mm512_setzero_ps();
  const int64_t ng = pn.kc / pn.G, steps = pn.G / 4;
  for (int64_t g = 0; g < ng; ++g) {
    __m512i acc[kMR][2];
    for (int i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
    const uint8_t* wq = pn.q + g * steps * kNR * 4;
    for (int64_t s = 0; s < steps; ++s) {
      const __m512i w0 = _mm512_load_si512(wq + s * kNR * 4);
      const __m512i w1 = _mm512_load_si512(wq + s * kNR * 4 + 64);
      const int64_t k = g * pn.G + s * 4;
      for (int i = 0; i < kMR; ++i) {
        dpbusd_bcast(acc[i][0], w0, xq[i] + k);
        dpbusd_bcast(acc[i][1], w1, xq[i] + k);
      }
    }
    const __m512 s0 = _mm512_load_ps(pn.s[g]), s1 = _mm512_load_ps(pn.s[g] + 16);
    const __m512 b0 = _mm512_load_ps(pn.b[g]), b1 = _mm512_load_ps(pn.b[g] + 16);
    for (int i = 0; i < kMR; ++i) {
      const __m512 sxi = _mm512_set1_ps(sx[i][g]), xsi = _mm512_set1_ps(xs[i][g]);
      accf[i][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][0]), _mm512_mul_ps(s0, sxi), accf[i][0]);
      accf[i][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][1]), _mm512_mul_ps(s1, sxi), accf[i][1]);
      accf[i][0] = _mm512_fmadd_ps(b0, xsi, accf[i][0]);
      accf[i][1] = _mm512_fmadd_ps(b1, xsi, accf[i][1]);
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < 2; ++v) _mm512_storeu_ps(c + i * ldc + v * 16, accf[i][v]);
}

}  // namespace

void gemm_int8(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = p.N, K = p.K, G = p.group, groups = K / G;
  QuantizedX qx;
  qx.groups = groups;
  qx.q.resize(size_t(M * K));
  qx.scale.resize(size_t(M * groups));
  qx.sum.resize(size_t(M * groups));
  pool.parallel_for(M, 16, [&](int64_t m0, int64_t m1) { quantize_rows(x, m0, m1, K, G, qx); });
  const int64_t kc_max = std::max<int64_t>(G, kKC / G * G);
  const int64_t panels = (N + kNR - 1) / kNR;
  pool.run(panels, [&](int64_t pi) {
    const int64_t n0 = pi * kNR, nr = std::min(kNR, N - n0);
    thread_local std::vector<Panel> panel_buf(1);  // ~80 KB: too big for the stack
    Panel& pn = panel_buf[0];
    alignas(64) float ctile[kMR * kNR];
    alignas(64) float btile[kNR] = {};
    if (bias) std::copy(bias + n0, bias + n0 + nr, btile);
    for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
      const int64_t kc = std::min(kc_max, K - k0);
      pack_panel(p, n0, nr, k0, kc, pn);
      for (int64_t m0 = 0; m0 < M; m0 += kMR) {
        const int64_t mr = std::min<int64_t>(kMR, M - m0);
        const int8_t* xr[kMR];
        const float *sr[kMR], *sumr[kMR];
        for (int i = 0; i < kMR; ++i) {
          const int64_t m = m0 + std::min<int64_t>(i, mr - 1);
          xr[i] = qx.q.data() + m * K + k0;
          sr[i] = qx.scale.data() + m * groups + k0 / G;
          sumr[i] = qx.sum.data() + m * groups + k0 / G;
        }
        float* c = y + m0 * N + n0;
        const bool accumulate = k0 > 0;
        if (mr == kMR && nr == kNR) {
          tile(pn, xr, sr, sumr, c, N, accumulate, bias ? btile : nullptr);
          continue;
        }
        for (int64_t i = 0; i < mr && accumulate; ++i) std::copy(c + i * N, c + i * N + nr, ctile + i * kNR);
        tile(pn, xr, sr, sumr, ctile, kNR, accumulate, bias ? btile : nullptr);
        for (int64_t i = 0; i < mr; ++i) std::copy(ctile + i * kNR, ctile + i * kNR + nr, c + i * N);
      }
    }
  });
}

#else

void gemm_int8(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  gemm(pool, p, x, M, y, bias);
}

#endif

}  // namespace vlm::matmul_detail
