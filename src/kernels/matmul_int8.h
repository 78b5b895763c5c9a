// Opt-in int8 matmul (MatMulPrecision::kInt8) for 2/4/8-bit MLX weights on AVX512_VNNI CPUs.
// Activations are quantized symmetrically per weight group (int8, one float scale per group)
// and multiplied with the weights' unsigned q values by vpdpbusd (u8·s8 -> s32):
//   y = Σ_g s_w[g]·s_x[g]·(Σ_k q_k·xq_k) + b_w[g]·Σ_k x_k   (Σx exact, in float).
// Only activation rounding (≤ 0.4% of a group's largest |x|) separates it from the f32 path.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/matmul_internal.h"
#include "kernels/matmul_x86.h"

namespace vlm::matmul_detail {

// True when kInt8 can run this weight (VNNI present, bits 2/4/8, whole-word groups).
bool int8_supports(const MatMulWeight::Impl& p);
void gemv_int8(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias);
void gemm_int8(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias);

#ifdef VLM_X86_KERNELS
// acc += w (u8) · x (s8) in place. Inline asm because GCC 12 surrounds the intrinsic with
// register copies when many accumulators are live (measured ~2x slower in the GEMM tile).
VLM_AVX512_VNNI inline void dpbusd(__m512i& acc, __m512i w, __m512i x) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(w), "v"(x));
}
// The same with x the 4 int8 at `x` broadcast to every lane ({1to16} memory operand).
VLM_AVX512_VNNI inline void dpbusd_bcast(__m512i& acc, __m512i w, const int8_t* x) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(x)));
}

// Activations [M, K] quantized per group of G: q[m, k] = round(x / scale[m, g]) in [-127, 127].
struct QuantizedX {
  int64_t groups = 0;
  std::vector<int8_t> q;     // [M, K]
  std::vector<float> scale;  // [M, groups]
  std::vector<float> sum;    // [M, groups], exact Σx of each group
};

// Rows [m0, m1) of x into out (already sized for all M rows). G must be a multiple of 16.
VLM_AVX512 inline void quantize_rows(const float* x, int64_t m0, int64_t m1, int64_t K, int64_t G, QuantizedX& out) {
  const int64_t groups = K / G;
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
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
      const float scale = a / 127.f;
      const __m512 inv = _mm512_set1_ps(a > 0.f ? 127.f / a : 0.f);
      int8_t* q = out.q.data() + m * K + g * G;
      for (int64_t k = 0; k < G; k += 16) {
        const __m512i i32 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + k), inv));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_cvtsepi32_epi8(i32));
      }
      out.scale[size_t(m * groups + g)] = scale;
      out.sum[size_t(m * groups + g)] = _mm512_reduce_add_ps(sum);
    }
}
#endif

}  // namespace vlm::matmul_detail
