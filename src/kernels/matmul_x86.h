// Shared pieces of the hand-written AVX-512 matmul kernels (matmul_gemv_avx512.cpp,
// matmul_repack.cpp). They use intrinsics because Highway 1.0.3 exposes neither vpermps with a
// 16-entry float table nor VNNI/BF16 dot products. Not part of the public API.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
// Passing __m512 between functions that all carry the target attribute is fine.
#pragma GCC diagnostic ignored "-Wpsabi"
#if !defined(__clang__)
// GCC 12 flags the deliberate _mm512_undefined_*() inside shift/extract intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define VLM_X86_KERNELS 1
#define VLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define VLM_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define VLM_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif

namespace vlm::matmul_detail {

// AVX-512 F/BW/VL/DQ present and not disabled through Highway's target mask (tests use
// hwy::SetSupportedTargetsForTest to exercise the portable fallbacks).
bool avx512_enabled();
// avx512_enabled() and AVX512_VNNI present.
bool avx512_vnni_enabled();

#ifdef VLM_X86_KERNELS
// The AVX512-BF16 instructions the bf16 kernels use (GEMM, attention), as a policy type.
struct NativeBf16 {
  // acc + Σ of the two products of each lane's bf16 pair (vdpbf16ps).
  static VLM_AVX512_BF16 inline __m512 dot(__m512 acc, __m512i x, __m512i w) {
    return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)w);
  }
  // 16 floats as 16 bf16, rounded to nearest even (vcvtneps2bf16).
  static VLM_AVX512_BF16 inline __m256i round16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }
  // 32 floats (lo: 0-15, hi: 16-31) as 32 bf16 in order (vcvtne2ps2bf16).
  static VLM_AVX512_BF16 inline __m512i round(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }
};

// The same values in AVX512F, so that tests run the bf16 kernels on CPUs without AVX512-BF16:
// a bf16 is the high half of a float, so both products are exact and the FMAs add them as the
// instruction does (odd element first, Intel SDM), except that denormals are kept where the
// instruction flushes them. Rounding is f32_to_bf16's (core/dtype.h) on 16 lanes.
struct EmulatedBf16 {
  static VLM_AVX512 inline __m512 dot(__m512 acc, __m512i x, __m512i w) {
    const __m512i high = _mm512_set1_epi32(int(0xFFFF0000u));
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(x, high)),
                          _mm512_castsi512_ps(_mm512_and_si512(w, high)), acc);
    return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(x, 16)), _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)),
                           acc);
  }
  static VLM_AVX512 inline __m256i round16(__m512 v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
  }
  static VLM_AVX512 inline __m512i round(__m512 lo, __m512 hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(round16(lo)), round16(hi), 1);
  }
};

// n floats -> bf16 (round to nearest even) at out; an odd n is paired with a zero, so out holds
// (n + 1) / 2 whole pairs.
template <class Isa>
VLM_AVX512_BF16 void to_bf16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    _mm512_storeu_si512(out + i, Isa::round(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16)));
  for (; i < n; ++i) out[i] = f32_to_bf16(x[i]);
  if (n % 2) out[n] = 0;
}
#endif

// Group layout of 16-word blocks of a packed row (wpg words per group, 16 % wpg == 0 or
// wpg % 16 == 0): first[b] = first group of block b, lane[l] = group of lane l relative to it.
// Computed once per call so the kernels need no division.
inline void block_groups(int64_t nblk, int64_t wpg, std::vector<int32_t>& first, int32_t* lane) {
  first.resize(size_t(nblk));
  for (int64_t b = 0; b < nblk; ++b) first[size_t(b)] = int32_t(b * 16 / wpg);
  for (int l = 0; l < 16; ++l) lane[l] = wpg < 16 ? int32_t(l / wpg) : 0;
}

#ifdef VLM_X86_KERNELS
VLM_AVX512 inline __mmask16 tail16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// Lanes k of base[i, i + 16) as float32 (F32, BF16 or F16 storage), zero elsewhere.
VLM_AVX512 inline __m512 load_floats16(DType t, const void* base, int64_t i, __mmask16 k) {
  if (t == DType::F32) return _mm512_maskz_loadu_ps(k, static_cast<const float*>(base) + i);
  const __m256i h = _mm256_maskz_loadu_epi16(k, static_cast<const uint16_t*>(base) + i);
  return t == DType::BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}

// In-register transpose of a 16×16 block of 32-bit words (r[i] = row i -> r[c] = column c):
// unpack 32-bit and 64-bit pairs within 128-bit blocks, then regroup the blocks.
VLM_AVX512 inline void transpose16x16(__m512i r[16]) {
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

// Per-row scale buffers hold whole vectors plus one of zeros: lane lookups read past the end.
inline int64_t padded_groups(int64_t groups) {
  return (groups + 15) / 16 * 16 + 16;
}

// out[0, padded_groups(n)) = base[i, i + n) as float32 times mul[0, n) (if given), zero padded.
// Whole-vector stores only: a masked store followed by a load of it stalls store forwarding.
VLM_AVX512 inline void scales_to_f32(DType t, const void* base, int64_t i, int64_t n, const float* mul, float* out) {
  for (int64_t g = 0; g < padded_groups(n); g += 16) {
    const __mmask16 k = tail16(n - g);
    __m512 v = load_floats16(t, base, i + g, k);
    if (mul) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, mul + g));
    _mm512_storeu_ps(out + g, v);
  }
}

// acc + Σ_g base[i + g]·xs[g] for g < n, lane-wise (not reduced).
VLM_AVX512 inline __m512 dot_lanes(DType t, const void* base, int64_t i, const float* xs, int64_t n, __m512 acc) {
  for (int64_t g = 0; g < n; g += 16) {
    const __mmask16 k = tail16(n - g);
    acc = _mm512_fmadd_ps(load_floats16(t, base, i + g, k), _mm512_maskz_loadu_ps(k, xs + g), acc);
  }
  return acc;
}

#endif

}  // namespace vlm::matmul_detail
