// Int8 arithmetic (MatMulPrecision::kInt8) for 2/4/8-bit MLX weights on AVX512_VNNI CPUs, shared
// by the repacked kernels (matmul_repack.cpp). Activations are quantized symmetrically per weight
// group to 15-bit integers v = round(x / s), s = amax/16256, stored as two int8 planes
// v = 128·hi + lo (hi in [-127, 127], lo in [-64, 63]); each plane meets the weights' unsigned q
// values in its own vpdpbusd (u8·s8 -> s32), and the sums combine exactly in int32:
//   y = Σ_g s_w[g]·s_x[g]·(128·Σ_k q_k·hi_k + Σ_k q_k·lo_k) + b_w[g]·Σ_k x_k   (Σx exact, in float).
// Only activation rounding (<= amax/32512 per value, ~1/128 of a single int8 plane's) separates it
// from the f32 path: the second plane costs one more vpdpbusd per weight vector, free in the
// memory-bound GEMV, and is what keeps `fast` within the fidelity bounds (docs in README).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/matmul_internal.h"
#include "kernels/matmul_x86.h"

namespace vlm::matmul_detail {

#ifdef VLM_X86_KERNELS
// acc += w (u8) · x (s8) in place, x the 4 int8 at `x` broadcast to every lane ({1to16} memory
// operand). Inline asm because GCC 12 surrounds the intrinsic with register copies when many
// accumulators are live, as in the panel kernel's tiles (measured ~2x slower in an earlier GEMM tile).
VLM_AVX512_VNNI inline void dpbusd_bcast(__m512i& acc, __m512i w, const int8_t* x) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(x)));
}

// Activations [M, K] quantized per group of G: x ≈ scale[m, g]·(128·hi[m, k] + lo[m, k]).
struct QuantizedX {
  static constexpr int kLevels = 127 * 128;  // largest |v|
  int64_t groups = 0;
  std::vector<int8_t> hi, lo;  // [M, K]
  std::vector<float> scale;    // [M, groups]: the step s of v
  std::vector<float> sum;      // [M, groups], exact Σx of each group

  void resize(int64_t M, int64_t K, int64_t groups_per_row) {
    groups = groups_per_row;
    hi.resize(size_t(M * K));
    lo.resize(size_t(M * K));
    scale.resize(size_t(M * groups));
    sum.resize(size_t(M * groups));
  }
};

// Rows [m0, m1) of x into out (already sized for all M rows). G must be a multiple of 16.
VLM_AVX512 inline void quantize_rows(const float* x, int64_t m0, int64_t m1, int64_t K, int64_t G, QuantizedX& out) {
  const int64_t groups = K / G;
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512i half = _mm512_set1_epi32(64);
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t g = 0; g < groups; ++g) {
      const float* xg = x + m * K + g * G;
      __m512 amax = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
      for (int64_t k = 0; k < G; k += 16) {
        const __m512 v = _mm512_loadu_ps(xg + k);
        amax = _mm512_max_ps(amax, _mm512_and_ps(v, abs_mask));
        sum = _mm512_add_ps(sum, v);
      }
      const float a = _mm512_reduce_max_ps(amax);
      const __m512 inv = _mm512_set1_ps(a > 0.f ? float(QuantizedX::kLevels) / a : 0.f);
      int8_t* hi = out.hi.data() + m * K + g * G;
      int8_t* lo = out.lo.data() + m * K + g * G;
      for (int64_t k = 0; k < G; k += 16) {
        // |v| <= 16256 (x·inv may round one step past it: hi still <= 127, lo >= -64).
        const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + k), inv));
        const __m512i h = _mm512_srai_epi32(_mm512_add_epi32(v, half), 7);  // round(v / 128)
        const __m512i l = _mm512_sub_epi32(v, _mm512_slli_epi32(h, 7));     // [-64, 63]
        _mm_storeu_si128(reinterpret_cast<__m128i*>(hi + k), _mm512_cvtsepi32_epi8(h));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(lo + k), _mm512_cvtsepi32_epi8(l));
      }
      out.scale[size_t(m * groups + g)] = a / float(QuantizedX::kLevels);
      out.sum[size_t(m * groups + g)] = _mm512_reduce_add_ps(sum);
    }
}
#endif

}  // namespace vlm::matmul_detail
