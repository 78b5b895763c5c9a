// Shared pieces of the hand-written AVX-512 matmul kernels (matmul_gemv_avx512.cpp,
// matmul_int8*.cpp). They use intrinsics because Highway 1.0.3 exposes neither vpermps with a
// 16-entry float table nor VNNI/BF16 dot products. Not part of the public API.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
// Passing __m512 between functions that all carry the target attribute is fine.
#pragma GCC diagnostic ignored "-Wpsabi"
// GCC 12 flags the deliberate _mm512_undefined_*() inside shift/extract intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define VLM_X86_KERNELS 1
#define VLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define VLM_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#endif

namespace vlm::matmul_detail {

// AVX-512 F/BW/VL/DQ present and not disabled through Highway's target mask (tests use
// hwy::SetSupportedTargetsForTest to exercise the portable fallbacks).
bool avx512_enabled();
// avx512_enabled() and AVX512_VNNI present.
bool avx512_vnni_enabled();

// First group of each 16-word block of a packed row (wpg words per group), computed once per
// call so the kernels' block loops need no division.
inline void block_group_offsets(int64_t nblk, int64_t wpg, std::vector<int32_t>& out) {
  out.resize(size_t(nblk));
  for (int64_t b = 0; b < nblk; ++b) out[size_t(b)] = int32_t(b * 16 / wpg);
}

#ifdef VLM_X86_KERNELS
// out[0, n) = base[i, i + n) as float32 (F32, BF16 or F16 storage).
VLM_AVX512 inline void floats_to_f32(DType t, const void* base, int64_t i, int64_t n, float* out) {
  int64_t k = 0;
  for (; k < n; k += 16) {
    const __mmask16 m = n - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - k)) - 1);
    __m512 v;
    if (t == DType::F32) {
      v = _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + i + k);
    } else {
      const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i + k);
      v = t == DType::BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                           : _mm512_cvtph_ps(h);
    }
    _mm512_mask_storeu_ps(out + k, m, v);
  }
}

// Σ a[i]·b[i] for i < n.
VLM_AVX512 inline float dot_f32(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; k += 16) {
    const __mmask16 m = n - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - k)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), _mm512_maskz_loadu_ps(m, b + k), acc);
  }
  return _mm512_reduce_add_ps(acc);
}
#endif

}  // namespace vlm::matmul_detail
