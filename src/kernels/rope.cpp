// Rotary position embedding (ops.h). Memory-bound and short. AVX-512 CPUs take 16 lanes at a
// time with separate multiplies and adds (no FMA), i.e. exactly the rounding of the scalar loop
// (compiled for baseline x86-64, which has no FMA to contract into), so results do not depend on
// the path.
#include "kernels/matmul_x86.h"
#include "kernels/ops.h"

namespace vlm {
namespace {

void rope_row_scalar(float* v, const float* c, const float* s, int half, int i) {
  for (; i < half; ++i) {
    const float a = v[i], b = v[i + half];
    v[i] = a * c[i] - b * s[i];
    v[i + half] = b * c[i + half] + a * s[i + half];
  }
}

#ifdef VLM_X86_KERNELS
VLM_AVX512 void rope_avx512(float* x, int64_t rows, int64_t row_stride, int heads, int head_dim, const float* cos,
                            const float* sin) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < rows; ++t) {
    const float* c = cos + t * head_dim;
    const float* s = sin + t * head_dim;
    for (int h = 0; h < heads; ++h) {
      float* v = x + t * row_stride + int64_t(h) * head_dim;
      for (int i = 0; i < half; i += 16) {
        const __mmask16 m = matmul_detail::tail16(half - i);
        const __m512 a = _mm512_maskz_loadu_ps(m, v + i), b = _mm512_maskz_loadu_ps(m, v + i + half);
        const __m512 ca = _mm512_maskz_loadu_ps(m, c + i), sa = _mm512_maskz_loadu_ps(m, s + i);
        const __m512 cb = _mm512_maskz_loadu_ps(m, c + i + half), sb = _mm512_maskz_loadu_ps(m, s + i + half);
        __m512 ac = _mm512_mul_ps(a, ca), bs = _mm512_mul_ps(b, sa), bc = _mm512_mul_ps(b, cb),
               as = _mm512_mul_ps(a, sb);
        // Keep GCC from contracting into FMA (it does for intrinsics): the scalar loop rounds twice.
        __asm__("" : "+v"(ac), "+v"(bs), "+v"(bc), "+v"(as));
        _mm512_mask_storeu_ps(v + i, m, _mm512_sub_ps(ac, bs));
        _mm512_mask_storeu_ps(v + i + half, m, _mm512_add_ps(bc, as));
      }
    }
  }
}
#endif

}  // namespace

void apply_rope(float* x, int64_t rows, int64_t row_stride, int heads, int head_dim, const float* cos,
                const float* sin) {
#ifdef VLM_X86_KERNELS
  if (matmul_detail::avx512_enabled()) return rope_avx512(x, rows, row_stride, heads, head_dim, cos, sin);
#endif
  const int half = head_dim / 2;
  for (int64_t t = 0; t < rows; ++t)
    for (int h = 0; h < heads; ++h)
      rope_row_scalar(x + t * row_stride + int64_t(h) * head_dim, cos + t * head_dim, sin + t * head_dim, half, 0);
}

}  // namespace vlm
