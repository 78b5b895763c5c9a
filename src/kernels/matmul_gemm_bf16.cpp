// GEMM with bfloat16 dot products (MatMulPrecision::kBF16, Precision::kFast for dense weights),
// in the blocking it shares with the float32 GEMM (gemm_blocking.h): activations are rounded to
// bf16 pairs and packed into kMR-row tiles per K slice; per KC slice each task packs its panel of
// weights as [KC/2][NR] bf16 pairs (L1-resident; weights repacked at load, matmul_repack.h, are
// stored in that layout and only copied) and runs a
// kMR×NR register tile (24 zmm accumulators, vdpbf16ps: two products per f32 lane) over the
// packed tiles. (Before this blocking it read activations through row pointers K apart and kept
// partial sums in y; the same change made the float32 GEMM 30-60% faster.)
// Written with intrinsics because hwy 1.0.3 has no bf16 dot product. The AVX512-BF16
// instructions sit behind a policy type (matmul_x86.h) so that the same code runs with them
// emulated in AVX512F (gemm_bf16_emulated) and its blocking is tested on CPUs that lack them.
#include <algorithm>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/gemm_blocking.h"
#include "kernels/matmul_internal.h"
#include "kernels/matmul_repack.h"
#include "kernels/matmul_x86.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VLM_HAVE_BF16_KERNEL 1
#define VLM_BF16_TARGET VLM_AVX512_BF16
#endif

namespace vlm::matmul_detail {

#ifdef VLM_HAVE_BF16_KERNEL
namespace {

constexpr int kMR = 6;  // activation rows per register tile
constexpr int kNV = 4;  // zmm of output features per tile: NR = 64
constexpr int64_t kNR = 16 * kNV;
static_assert(kNR == RepackedBf16::kPanelRows, "repacked bf16 panels are this GEMM's panels");
constexpr int64_t kKC = 256;  // K slice (even): a panel is kKC/2 pairs × kNR = 32 KB, in L1
constexpr int64_t kKP = kKC / 2;
constexpr int64_t kMB = 1024;  // activation rows packed at a time: the buffer stays <= kMB·K/2 words

// dst[kMR, kNR] = (src or bias or 0) + a[kp][kMR] · panel[kp][kNR] over bf16 pairs; a is the tile's
// packed activations, src (kAccumulate) its partial sums so far, kNR floats per row.
template <class Isa, bool kAccumulate>
VLM_BF16_TARGET void tile(const uint32_t* a, const uint32_t* panel, int64_t kp, const float* src, const float* bias,
                          float* dst, int64_t ldd) {
  __m512 acc[kMR][kNV];
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v)
      acc[i][v] = kAccumulate ? _mm512_loadu_ps(src + i * kNR + 16 * v)
                  : bias      ? _mm512_loadu_ps(bias + 16 * v)
                              : _mm512_setzero_ps();
  for (int64_t k = 0; k < kp; ++k) {
    __m512i wv[kNV];
    for (int v = 0; v < kNV; ++v) wv[v] = _mm512_load_si512(panel + k * kNR + 16 * v);
    for (int i = 0; i < kMR; ++i) {
      const __m512i xb = _mm512_set1_epi32(int(a[k * kMR + i]));
      for (int v = 0; v < kNV; ++v) acc[i][v] = Isa::dot(acc[i][v], xb, wv[v]);
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNV; ++v) _mm512_storeu_ps(dst + i * ldd + 16 * v, acc[i][v]);
}

// Rows [m0 + t·kMR, +kMR) of x as bf16 pairs in K slices of tiles, each [kp][kMR] words (rows past
// M are 0): slice s of tile t starts at packed + s·kKP·tiles·kMR + t·kp·kMR. row: Kp words of scratch.
template <class Isa>
VLM_BF16_TARGET void pack_tile(const float* x, int64_t K, int64_t M, int64_t m0, int64_t tiles, int64_t t,
                               uint32_t* row, uint32_t* packed) {
  const int64_t Kp = (K + 1) / 2;
  for (int i = 0; i < kMR; ++i) {
    const int64_t m = m0 + t * kMR + i;
    if (m < M)
      to_bf16<Isa>(x + m * K, K, reinterpret_cast<uint16_t*>(row));
    else
      std::fill(row, row + Kp, 0u);
    for (int64_t k0 = 0; k0 < Kp; k0 += kKP) {
      const int64_t kp = std::min(kKP, Kp - k0);
      uint32_t* dst = packed + k0 * tiles * kMR + t * kp * kMR + i;
      for (int64_t k = 0; k < kp; ++k) dst[k * kMR] = row[k0 + k];
    }
  }
}

// Packs rows [n0, n0 + nr) of W (nr <= kNR), pairs [k0/2, k0/2 + kp), as a panel [kp][kNR] of bf16
// pairs (rows past nr zero), 16 rows × 16 pairs per in-register transpose. `direct`: bf16 storage
// with even K, whose words already are the pairs; otherwise rows are converted first.
template <class Isa>
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
        to_bf16<Isa>(rowbuf, kc, reinterpret_cast<uint16_t*>(staged[i]));
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

template <class Isa>
void gemm_bf16_impl(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                    const float* bias) {
  const int64_t K = p.K, Kp = (K + 1) / 2;
  const RepackedBf16* panels = p.bf16_panels.get();
  const bool direct = !panels && !p.quantized && p.w.dtype() == DType::BF16 && K % 2 == 0;
  blocked_gemm<uint32_t, uint32_t>(
      pool, GemmBlocking{Kp, kKP, kNR, kMR, kMB}, M, p.N, y, bias,
      [&](int64_t m0, int64_t tiles, int64_t t, uint32_t* packed) {
        thread_local std::vector<uint32_t> row_buf;
        pack_tile<Isa>(x, K, M, m0, tiles, t, scratch(row_buf, size_t(Kp)), packed);
      },
      [&](int64_t n0, int64_t nr, int64_t k0, int64_t kp, uint32_t* panel) {  // k0, kp: pairs
        if (panels) {  // repacked at load in this very layout: one contiguous copy
          const uint32_t* src = panels->panel(n0 / kNR) + k0 * kNR;
          std::copy(src, src + kp * kNR, panel);
          return;
        }
        pack_block<Isa>(p, direct, n0, nr, 2 * k0, std::min(2 * kp, K - 2 * k0), panel);
      },
      [](bool accumulate, const uint32_t* a, const uint32_t* panel, int64_t kp, const float* src, const float* b,
         float* dst,
         int64_t ldd) { (accumulate ? tile<Isa, true> : tile<Isa, false>)(a, panel, kp, src, b, dst, ldd); });
}

}  // namespace

bool bf16_gemm_supported() {
  static const bool cpu = __builtin_cpu_supports("avx512bf16");
  return cpu && avx512_enabled();
}

void gemm_bf16(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  gemm_bf16_impl<NativeBf16>(pool, p, x, M, y, bias);
}

void gemm_bf16_emulated(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                        const float* bias) {
  gemm_bf16_impl<EmulatedBf16>(pool, p, x, M, y, bias);
}

#else  // no x86 bf16 kernel on this platform

bool bf16_gemm_supported() {
  return false;
}
void gemm_bf16(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  gemm(pool, p, x, M, y, bias);
}
void gemm_bf16_emulated(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                        const float* bias) {
  gemm(pool, p, x, M, y, bias);
}

#endif

}  // namespace vlm::matmul_detail
