// Dense bf16 weights repacked once at load into 64-row panels of bf16 pairs (layout in
// matmul_repack.h), and the GEMV that streams them (decode). The GEMMs read the same panels in
// their fill steps (matmul_gemm.cpp converts them to f32, matmul_gemm_bf16.cpp copies them).
#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/matmul_repack.h"
#include "kernels/matmul_x86.h"

namespace vlm::matmul_detail {

namespace {
constexpr int64_t kPR = RepackedBf16::kPanelRows;
constexpr int kMaxRows = 6;  // activation rows per GEMV pass (MatMulWeight's GEMV limit)

// Panel pn, word by word: any K, any platform (odd K: the last pair's high half is zero).
void repack_panel_scalar(const uint16_t* w, int64_t N, int64_t K, int64_t Kp, int64_t pn, uint32_t* out) {
  for (int64_t l = 0; l < kPR; ++l) {
    const int64_t r = pn * kPR + l;
    for (int64_t j = 0; j < Kp; ++j) {
      uint32_t word = 0;
      if (r < N) word = uint32_t(w[r * K + 2 * j]) | uint32_t(2 * j + 1 < K ? w[r * K + 2 * j + 1] : 0) << 16;
      out[j * kPR + l] = word;
    }
  }
}

#ifdef VLM_X86_KERNELS
// Even K: a row's 32-bit words already are its pairs; 16 rows × 16 pairs per in-register transpose.
VLM_AVX512 void repack_panel_avx512(const uint16_t* w, int64_t N, int64_t K, int64_t Kp, int64_t pn, uint32_t* out) {
  for (int64_t g = 0; g < kPR; g += 16) {
    const uint32_t* src[16];
    for (int i = 0; i < 16; ++i) {
      const int64_t r = pn * kPR + g + i;
      src[i] = r < N ? reinterpret_cast<const uint32_t*>(w + r * K) : nullptr;
    }
    for (int64_t j = 0; j < Kp; j += 16) {
      const __mmask16 m = tail16(Kp - j);
      __m512i v[16];
      for (int i = 0; i < 16; ++i) v[i] = src[i] ? _mm512_maskz_loadu_epi32(m, src[i] + j) : _mm512_setzero_si512();
      transpose16x16(v);
      for (int64_t c = 0; c < std::min<int64_t>(16, Kp - j); ++c) _mm512_storeu_si512(out + (j + c) * kPR + g, v[c]);
    }
  }
}

// acc[R][64 outputs] of one panel over all pairs, float32 products of the exact weights: the low
// half of a word is element 2j, the high half element 2j + 1 (zero past an odd K).
template <int R>
VLM_AVX512 void panel_f32(const uint32_t* panel, int64_t K, const float* x, float* out) {
  __m512 acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_ps();
  const __m512i high = _mm512_set1_epi32(int(0xFFFF0000u));
  const int64_t pairs = K / 2;
  for (int64_t j = 0; j < pairs; ++j)
    for (int v = 0; v < 4; ++v) {
      const __m512i wv = _mm512_loadu_si512(panel + j * kPR + 16 * v);
      const __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(wv, 16));
      const __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(wv, high));
      for (int i = 0; i < R; ++i) {
        acc[i][v] = _mm512_fmadd_ps(_mm512_set1_ps(x[i * K + 2 * j]), lo, acc[i][v]);
        acc[i][v] = _mm512_fmadd_ps(_mm512_set1_ps(x[i * K + 2 * j + 1]), hi, acc[i][v]);
      }
    }
  if (K % 2)
    for (int v = 0; v < 4; ++v) {
      const __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(panel + pairs * kPR + 16 * v), 16));
      for (int i = 0; i < R; ++i) acc[i][v] = _mm512_fmadd_ps(_mm512_set1_ps(x[i * K + K - 1]), lo, acc[i][v]);
    }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(out + i * kPR + 16 * v, acc[i][v]);
}

// The same with bf16 dot products against activations already rounded to pairs (xp: R rows of Kp words).
template <int R, class Isa>
VLM_AVX512_BF16 void panel_dot(const uint32_t* panel, int64_t Kp, const uint32_t* xp, float* out) {
  __m512 acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t j = 0; j < Kp; ++j) {
    __m512i wv[4];
    for (int v = 0; v < 4; ++v) wv[v] = _mm512_loadu_si512(panel + j * kPR + 16 * v);
    for (int i = 0; i < R; ++i) {
      const __m512i xb = _mm512_set1_epi32(int(xp[i * Kp + j]));
      for (int v = 0; v < 4; ++v) acc[i][v] = Isa::dot(acc[i][v], xb, wv[v]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(out + i * kPR + 16 * v, acc[i][v]);
}

template <int... R>
constexpr auto f32_table(std::integer_sequence<int, R...>) {
  return std::array{panel_f32<R + 1>...};
}
template <class Isa, int... R>
constexpr auto dot_table(std::integer_sequence<int, R...>) {
  return std::array{panel_dot<R + 1, Isa>...};
}

// y rows [0, M) in blocks of kMaxRows; each task owns whole panels (64 outputs), streams each
// once per row block and writes its outputs (+ bias).
template <class Isa>
void gemv_panels_impl(ThreadPool& pool, const RepackedBf16& rb, const float* x, int64_t M, float* y, const float* bias,
                      bool dot) {
  static constexpr auto kF32 = f32_table(std::make_integer_sequence<int, kMaxRows>());
  static constexpr auto kDot = dot_table<Isa>(std::make_integer_sequence<int, kMaxRows>());
  const int64_t K = rb.K, Kp = rb.Kp, N = rb.N;
  std::vector<uint32_t> xp;
  for (int64_t m0 = 0; m0 < M; m0 += kMaxRows) {
    const int R = int(std::min<int64_t>(kMaxRows, M - m0));
    const float* xm = x + m0 * K;
    if (dot) {  // activations rounded to bf16 pairs once per row block (an odd K pairs the last with 0)
      xp.resize(size_t(R * Kp));
      for (int i = 0; i < R; ++i) to_bf16<Isa>(xm + i * K, K, reinterpret_cast<uint16_t*>(xp.data() + i * Kp));
    }
    pool.parallel_for(rb.panels, 1, [&](int64_t p0, int64_t p1) {
      alignas(64) float out[kMaxRows * kPR];
      for (int64_t pn = p0; pn < p1; ++pn) {
        if (dot)
          kDot[size_t(R - 1)](rb.panel(pn), Kp, xp.data(), out);
        else
          kF32[size_t(R - 1)](rb.panel(pn), K, xm, out);
        const int64_t n0 = pn * kPR, nr = std::min(kPR, N - n0);
        for (int i = 0; i < R; ++i)
          for (int64_t l = 0; l < nr; ++l) y[(m0 + i) * N + n0 + l] = out[i * kPR + l] + (bias ? bias[n0 + l] : 0.f);
      }
    });
  }
}
#endif
}  // namespace

bool repack_bf16_supports(const MatMulWeight::Impl& p) {
  return !p.quantized && p.w.dtype() == DType::BF16 && avx512_enabled();
}

std::shared_ptr<const RepackedBf16> repack_bf16(ThreadPool& pool, const MatMulWeight::Impl& p) {
  auto rb = std::make_shared<RepackedBf16>();
  rb->N = p.N;
  rb->K = p.K;
  rb->Kp = (p.K + 1) / 2;
  rb->panels = (p.N + kPR - 1) / kPR;
  rb->data = alloc_huge_bytes(int64_t(rb->bytes()));
  const uint16_t* w = p.w.data<uint16_t>();
  uint32_t* out = rb->data.data<uint32_t>();
  pool.parallel_for(rb->panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t pn = p0; pn < p1; ++pn) {
      uint32_t* dst = out + pn * rb->Kp * kPR;
#ifdef VLM_X86_KERNELS
      if (p.K % 2 == 0) {
        repack_panel_avx512(w, p.N, p.K, rb->Kp, pn, dst);
        continue;
      }
#endif
      repack_panel_scalar(w, p.N, p.K, rb->Kp, pn, dst);
    }
  });
  return rb;
}

void repacked_bf16_dequantize_range(const RepackedBf16& rb, int64_t r, int64_t k0, int64_t n, float* out) {
  const uint32_t* column = rb.panel(r / kPR) + r % kPR;
  for (int64_t k = k0; k < k0 + n; ++k) out[k - k0] = bf16_to_f32(uint16_t(column[k / 2 * kPR] >> (k % 2 * 16)));
}

#ifdef VLM_X86_KERNELS
void gemv_panels_bf16(ThreadPool& pool, const RepackedBf16& rb, const float* x, int64_t M, float* y, const float* bias,
                      bool bf16_dot) {
  gemv_panels_impl<NativeBf16>(pool, rb, x, M, y, bias, bf16_dot);
}
void gemv_panels_bf16_emulated(ThreadPool& pool, const RepackedBf16& rb, const float* x, int64_t M, float* y,
                               const float* bias) {
  gemv_panels_impl<EmulatedBf16>(pool, rb, x, M, y, bias, true);
}
#else
// Never prepared without the AVX-512 kernels (repack_bf16_supports is false there).
void gemv_panels_bf16(ThreadPool&, const RepackedBf16&, const float*, int64_t, float*, const float*, bool) {}
void gemv_panels_bf16_emulated(ThreadPool&, const RepackedBf16&, const float*, int64_t, float*, const float*) {}
#endif

}  // namespace vlm::matmul_detail
