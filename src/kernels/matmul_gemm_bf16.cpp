// Opt-in GEMM with bfloat16 dot products (MatMulPrecision::kBF16): activations are rounded to
// bf16 once per call, weight panels are dequantized to f32 and rounded to bf16 pairs laid out
// [KC/2][NR][2], and vdpbf16ps accumulates two products per f32 lane. Same blocking as the f32
// GEMM (matmul_gemm.cpp). Written with intrinsics because hwy 1.0.3 has no bf16 dot product.
#include <algorithm>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/matmul_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VLM_HAVE_BF16_KERNEL 1
#define VLM_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

namespace vlm::matmul_detail {

#ifdef VLM_HAVE_BF16_KERNEL
namespace {

constexpr int64_t kNR = 32;   // output features per panel: two zmm of f32
constexpr int kMR = 8;        // activation rows per tile: 16 accumulators
constexpr int64_t kKC = 256;  // K slice (even): panel of KC/2·NR pairs = 32 KB

// n floats -> bf16 (round to nearest even), n even or the last value paired with zero.
VLM_BF16_TARGET void to_bf16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, (__m512i)v);
  }
  for (; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

// c[MR, NR] (+)= x[MR, 2·kp] · panel; xr are the MR activation rows as bf16 pairs.
VLM_BF16_TARGET void tile(const uint32_t* const* xr, const uint32_t* panel, int64_t kp, float* c, int64_t ldc,
                          bool accumulate, const float* bias) {
  __m512 acc[kMR][2];
  for (int i = 0; i < kMR; ++i) {
    if (accumulate) {
      acc[i][0] = _mm512_loadu_ps(c + i * ldc);
      acc[i][1] = _mm512_loadu_ps(c + i * ldc + 16);
    } else if (bias) {
      acc[i][0] = _mm512_loadu_ps(bias);
      acc[i][1] = _mm512_loadu_ps(bias + 16);
    } else {
      acc[i][0] = _mm512_setzero_ps();
      acc[i][1] = _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kp; ++k) {
    const __m512bh w0 = (__m512bh)_mm512_load_si512(panel + k * kNR);
    const __m512bh w1 = (__m512bh)_mm512_load_si512(panel + k * kNR + 16);
    for (int i = 0; i < kMR; ++i) {
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(int(xr[i][k]));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], xb, w0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], xb, w1);
    }
  }
  for (int i = 0; i < kMR; ++i) {
    _mm512_storeu_ps(c + i * ldc, acc[i][0]);
    _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
  }
}

}  // namespace

bool bf16_gemm_supported() {
  static const bool ok = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  return ok;
}

void gemm_bf16(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = p.N, K = p.K, Kp = (K + 1) / 2;
  // Activations as bf16 pairs, each row padded to whole pairs with a zero.
  std::vector<uint32_t> xb(size_t(M * Kp), 0);
  pool.parallel_for(M, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) to_bf16(x + m * K, K, reinterpret_cast<uint16_t*>(xb.data() + m * Kp));
  });
  const bool direct = !p.quantized && p.w.dtype() == DType::BF16 && K % 2 == 0;
  const int64_t panels = (N + kNR - 1) / kNR;
  pool.run(panels, [&](int64_t pi) {
    const int64_t n0 = pi * kNR, nr = std::min(kNR, N - n0);
    alignas(64) uint32_t panel[kKC / 2 * kNR];
    alignas(64) float ctile[kMR * kNR];
    alignas(64) float btile[kNR] = {};
    float rowbuf[kKC + 1];
    uint32_t pairbuf[kKC / 2];
    if (bias) std::copy(bias + n0, bias + n0 + nr, btile);
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int64_t kc = std::min(kKC, K - k0), kp = (kc + 1) / 2;
      for (int64_t r = 0; r < kNR; ++r) {
        if (r < nr && direct) {
          // bf16 weights with even K: the stored pairs are exactly the panel's pairs.
          const uint32_t* pairs = static_cast<const uint32_t*>(p.w.raw()) + ((n0 + r) * K + k0) / 2;
          for (int64_t k = 0; k < kp; ++k) panel[k * kNR + r] = pairs[k];
        } else if (r < nr) {
          dequantize_range(p, n0 + r, k0, kc, rowbuf);
          rowbuf[kc] = 0.f;
          to_bf16(rowbuf, 2 * kp, reinterpret_cast<uint16_t*>(pairbuf));
          for (int64_t k = 0; k < kp; ++k) panel[k * kNR + r] = pairbuf[k];
        } else {
          for (int64_t k = 0; k < kp; ++k) panel[k * kNR + r] = 0;
        }
      }
      for (int64_t m0 = 0; m0 < M; m0 += kMR) {
        const int64_t mr = std::min<int64_t>(kMR, M - m0);
        const uint32_t* xr[kMR];
        for (int i = 0; i < kMR; ++i) xr[i] = xb.data() + (m0 + std::min<int64_t>(i, mr - 1)) * Kp + k0 / 2;
        float* c = y + m0 * N + n0;
        const bool accumulate = k0 > 0;
        if (mr == kMR && nr == kNR) {
          tile(xr, panel, kp, c, N, accumulate, bias ? btile : nullptr);
          continue;
        }
        for (int64_t i = 0; i < mr && accumulate; ++i) std::copy(c + i * N, c + i * N + nr, ctile + i * kNR);
        tile(xr, panel, kp, ctile, kNR, accumulate, bias ? btile : nullptr);
        for (int64_t i = 0; i < mr; ++i) std::copy(ctile + i * kNR, ctile + i * kNR + nr, c + i * N);
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
