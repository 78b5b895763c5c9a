// AVX-512 dequantization of 4/8-bit row ranges to float32 (16 values per step instead of one):
// feeds the f32 and bf16 GEMM panels, where the scalar loop cost as much as the tiles.
#include <algorithm>

#include "kernels/matmul_internal.h"
#include "kernels/matmul_x86.h"

namespace vlm::matmul_detail {

#ifdef VLM_X86_KERNELS
namespace {

template <int BITS>
VLM_AVX512 void dequant_rows(const MatMulWeight::Impl& p, int64_t r, int64_t k0, int64_t n, float* out) {
  const uint8_t* row = reinterpret_cast<const uint8_t*>(p.w.data<uint32_t>() + r * p.w.dim(1));
  const int64_t groups = p.K / p.group;
  const __m128i low = _mm_set1_epi8(0x0F);
  for (int64_t k = k0; k < k0 + n;) {
    const int64_t g = k / p.group;
    const __m512 s = _mm512_set1_ps(load_float(p.scales.dtype(), p.scales.raw(), r * groups + g));
    const __m512 b = _mm512_set1_ps(load_float(p.biases.dtype(), p.biases.raw(), r * groups + g));
    const int64_t gend = std::min(k0 + n, (g + 1) * p.group);
    for (; k < gend; k += 16) {
      __m128i q8;
      if constexpr (BITS == 8) {
        q8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k));
      } else {
        const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k / 2));
        q8 = _mm_unpacklo_epi8(_mm_and_si128(packed, low), _mm_and_si128(_mm_srli_epi16(packed, 4), low));
      }
      const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q8));
      _mm512_storeu_ps(out + (k - k0), _mm512_fmadd_ps(q, s, b));
    }
  }
}

}  // namespace

bool dequantize_range_avx512(const MatMulWeight::Impl& p, int64_t r, int64_t k0, int64_t n, float* out) {
  if (!p.quantized || (p.bits != 4 && p.bits != 8) || p.group % 16 != 0 || k0 % 16 != 0 || n % 16 != 0) return false;
  if (!avx512_enabled()) return false;
  if (p.bits == 4) dequant_rows<4>(p, r, k0, n, out);
  if (p.bits == 8) dequant_rows<8>(p, r, k0, n, out);
  return true;
}

#else

bool dequantize_range_avx512(const MatMulWeight::Impl&, int64_t, int64_t, int64_t, float*) {
  return false;
}

#endif

}  // namespace vlm::matmul_detail
