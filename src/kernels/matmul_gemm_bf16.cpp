// GEMM with bfloat16 dot products (MatMulPrecision::kBF16, Precision::kFast for dense weights):
// activations are rounded to bf16 pairs once per call (shared by every task), and each task owns
// a block of kNC output features over an M range. Per KC slice of K it packs its weight block into
// panels [KC/2][NR] of bf16 pairs (L2-resident; the stored [N, K] layout is untouched) and runs a
// kMR×NR register tile (24 zmm accumulators, vdpbf16ps: two products per f32 lane) over it. The
// MR activation rows of a tile stay in L1 while the tile sweeps the panels of the block.
// Written with intrinsics because hwy 1.0.3 has no bf16 dot product.
#include <algorithm>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/matmul_internal.h"
#include "kernels/matmul_x86.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VLM_HAVE_BF16_KERNEL 1
#define VLM_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif

namespace vlm::matmul_detail {

#ifdef VLM_HAVE_BF16_KERNEL
namespace {

constexpr int kMR = 6;  // activation rows per register tile
constexpr int kNV = 4;  // zmm of output features per tile: NR = 64
constexpr int64_t kNR = 16 * kNV;
constexpr int64_t kNC = 128;  // output features per task block (kNC / kNR panels)
constexpr int64_t kKC = 256;  // K slice (even): a block is kNC·KC/2 pairs = 128 KB, in L2

// n floats -> bf16 (round to nearest even) at out; an odd n is paired with a zero.
VLM_BF16_TARGET void to_bf16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, (__m512i)v);
  }
  for (; i < n; ++i) out[i] = f32_to_bf16(x[i]);
  if (n % 2) out[n] = 0;
}

// c[R, NR] (+)= x[R, 2·kp] · panel[kp][NR] for R <= kMR rows (xr: bf16 pair rows), storing the
// lanes of `cols` (masks per zmm). bias (may be null) initialises when !accumulate.
template <int R>
VLM_BF16_TARGET void tile(const uint32_t* const* xr, const uint32_t* panel, int64_t kp, float* c, int64_t ldc,
                          bool accumulate, const float* bias, const __mmask16* cols) {
  __m512 acc[R][kNV];
  for (int v = 0; v < kNV; ++v) {
    const __m512 init = bias ? _mm512_maskz_loadu_ps(cols[v], bias + 16 * v) : _mm512_setzero_ps();
    for (int i = 0; i < R; ++i) acc[i][v] = accumulate ? _mm512_maskz_loadu_ps(cols[v], c + i * ldc + 16 * v) : init;
  }
  for (int64_t k = 0; k < kp; ++k) {
    const uint32_t* w = panel + k * kNR;
    __m512bh wv[kNV];
    for (int v = 0; v < kNV; ++v) wv[v] = (__m512bh)_mm512_load_si512(w + 16 * v);
    for (int i = 0; i < R; ++i) {
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(int(xr[i][k]));
      for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], xb, wv[v]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < kNV; ++v) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, cols[v], acc[i][v]);
}

using TileFn = void (*)(const uint32_t* const*, const uint32_t*, int64_t, float*, int64_t, bool, const float*,
                        const __mmask16*);
constexpr TileFn kTiles[kMR + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

// In-register transpose of a 16×16 block of 32-bit words (r[i] = row i -> r[c] = column c):
// unpack 32-bit and 64-bit pairs within 128-bit blocks, then regroup the blocks.
VLM_BF16_TARGET inline void transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // block b of r[4i + c]: column 4b + c of rows 4i..4i+3
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i s0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x88), s1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xdd);
    const __m512i s2 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x88);
    const __m512i s3 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xdd);
    t[c] = _mm512_shuffle_i32x4(s0, s2, 0x88);
    t[8 + c] = _mm512_shuffle_i32x4(s0, s2, 0xdd);
    t[4 + c] = _mm512_shuffle_i32x4(s1, s3, 0x88);
    t[12 + c] = _mm512_shuffle_i32x4(s1, s3, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Packs rows [n0, n0 + nr) of W, pairs [k0/2, k0/2 + kp), as panels [kp][kNR] of bf16 pairs
// (rows past nr zero), 16 rows × 16 pairs per in-register transpose. `direct`: bf16 storage
// with even K, whose words already are the pairs; otherwise rows are converted first.
VLM_BF16_TARGET void pack_block(const MatMulWeight::Impl& p, bool direct, int64_t n0, int64_t nr, int64_t k0,
                                int64_t kc, uint32_t* out) {
  const int64_t kp = (kc + 1) / 2, panels = (nr + kNR - 1) / kNR;
  alignas(64) float rowbuf[kKC];
  alignas(64) uint32_t staged[16][kKC / 2];
  for (int64_t g = 0; g < panels * kNR; g += 16) {
    const uint32_t* src[16];
    for (int i = 0; i < 16; ++i) {
      const int64_t r = g + i;
      if (r >= nr) {
        src[i] = nullptr;
      } else if (direct) {
        src[i] = static_cast<const uint32_t*>(p.w.raw()) + ((n0 + r) * p.K + k0) / 2;
      } else {
        dequantize_range(p, n0 + r, k0, kc, rowbuf);
        to_bf16(rowbuf, kc, reinterpret_cast<uint16_t*>(staged[i]));
        src[i] = staged[i];
      }
    }
    uint32_t* dst = out + (g / kNR) * kp * kNR + g % kNR;
    for (int64_t k = 0; k < kp; k += 16) {
      const __mmask16 m = tail16(kp - k);
      __m512i w[16];
      for (int i = 0; i < 16; ++i) w[i] = src[i] ? _mm512_maskz_loadu_epi32(m, src[i] + k) : _mm512_setzero_si512();
      transpose16x16(w);
      for (int64_t c = 0; c < std::min<int64_t>(16, kp - k); ++c) _mm512_store_si512(dst + (k + c) * kNR, w[c]);
    }
  }
}

// A buffer that keeps its capacity across calls (grows only).
template <class T>
T* scratch(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace

bool bf16_gemm_supported() {
  static const bool cpu = __builtin_cpu_supports("avx512bf16");
  return cpu && avx512_enabled();
}

void gemm_bf16(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = p.N, K = p.K, Kp = (K + 1) / 2;
  // Activations as bf16 pairs, rows padded to whole pairs with a zero; converted once per call.
  thread_local std::vector<uint32_t> xbuf;
  uint32_t* xb = scratch(xbuf, size_t(M * Kp));
  pool.parallel_for(M, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) to_bf16(x + m * K, K, reinterpret_cast<uint16_t*>(xb + m * Kp));
  });
  const bool direct = !p.quantized && p.w.dtype() == DType::BF16 && K % 2 == 0;
  // Tasks: feature blocks × row blocks. Whole-M row blocks pack each weight block once; split M
  // only when there are too few feature blocks to keep every thread busy and balanced.
  const int64_t nblocks = (N + kNC - 1) / kNC;
  int64_t mblocks = 1;
  while (nblocks * mblocks < 8 * pool.size() && M / (mblocks * 2) >= 8 * kMR) mblocks *= 2;
  const int64_t mc = ((M + mblocks - 1) / mblocks + kMR - 1) / kMR * kMR;
  pool.run(nblocks * mblocks, [&](int64_t task) {
    const int64_t n0 = (task / mblocks) * kNC, nc = std::min(kNC, N - n0);
    const int64_t m_begin = (task % mblocks) * mc, m_end = std::min(M, m_begin + mc);
    thread_local std::vector<uint32_t> block_buf;
    uint32_t* block = scratch(block_buf, size_t(kNC * kKC / 2 + 16));
    block = reinterpret_cast<uint32_t*>((reinterpret_cast<uintptr_t>(block) + 63) & ~uintptr_t(63));
    const int64_t panels = (nc + kNR - 1) / kNR;
    __mmask16 cols[kNC / kNR][kNV];
    for (int64_t pi = 0; pi < panels; ++pi)
      for (int v = 0; v < kNV; ++v) cols[pi][v] = tail16(nc - pi * kNR - 16 * v);
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int64_t kc = std::min(kKC, K - k0), kp = (kc + 1) / 2;
      pack_block(p, direct, n0, nc, k0, kc, block);
      for (int64_t pi = 0; pi < panels; ++pi)
        for (int64_t m0 = m_begin; m0 < m_end; m0 += kMR) {
          const int rows = int(std::min<int64_t>(kMR, m_end - m0));
          const uint32_t* xr[kMR];
          for (int i = 0; i < rows; ++i) xr[i] = xb + (m0 + i) * Kp + k0 / 2;
          kTiles[rows](xr, block + pi * kp * kNR, kp, y + m0 * N + n0 + pi * kNR, N, k0 > 0,
                       bias ? bias + n0 + pi * kNR : nullptr, cols[pi]);
        }
    }
  });
}

#else  // no x86 bf16 kernel on this platform

bool bf16_gemm_supported() {
  return false;
}
void gemm_bf16(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  gemm(pool, p, x, M, y, bias);
}

#endif

}  // namespace vlm::matmul_detail
