// Internal state of MatMulWeight and the entry points of its SIMD kernels (matmul_gemv.cpp,
// matmul_gemm.cpp). Not part of the public API.
#pragma once
#include <cstdint>
#include <memory>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"

namespace vlm {

namespace matmul_detail {
struct RepackedQuant;
struct RepackedBf16;
}  // namespace matmul_detail

struct MatMulWeight::Impl {
  int64_t N = 0, K = 0;
  bool quantized = false;
  int bits = 0, group = 0;
  Tensor w;               // dense [N, K] or packed [N, K*bits/32]
  Tensor scales, biases;  // [N, K/group]
  // Set by prepare() for fast mode (matmul_repack.h); w, scales and biases are then empty.
  std::shared_ptr<const matmul_detail::RepackedQuant> repacked;    // 2/4/8-bit weights
  std::shared_ptr<const matmul_detail::RepackedBf16> bf16_panels;  // dense bf16 weights
};

namespace matmul_detail {

// Scalar f32 value i of a float tensor buffer of type t (F32/BF16/F16).
float load_float(DType t, const void* base, int64_t i);

// Row r, columns [k0, k0 + n) of W as float32 (n and k0 multiples of 32/bits words when
// quantized is not required; any range works).
void dequantize_range(const MatMulWeight::Impl& p, int64_t r, int64_t k0, int64_t n, float* out);
// The same for 4/8-bit groups of 16·j with k0 and n multiples of 16 on AVX-512 CPUs; returns
// false (doing nothing) otherwise.
bool dequantize_range_avx512(const MatMulWeight::Impl& p, int64_t r, int64_t k0, int64_t n, float* out);

// y[M, N] = x · Wᵀ (+ bias) for small M: weights streamed once per block of activation rows.
void gemv(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias);
// Same for large M: weights dequantized into cache-sized f32 panels reused across all rows.
void gemm(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias);

// AVX-512 GEMV (matmul_gemv_avx512.cpp): float32-exact like gemv(), for dense weights and
// 2/4/8-bit groups it supports; callers check gemv_avx512_supports() first.
bool gemv_avx512_supports(const MatMulWeight::Impl& p);
void gemv_avx512(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias);
// Dense BF16 weights with bf16-rounded activations and AVX512_BF16 dot products (fast GEMV);
// callers check gemv_bf16_dot_supports() first.
bool gemv_bf16_dot_supports(const MatMulWeight::Impl& p);
void gemv_bf16_dot(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                   const float* bias);
// The same with the bf16 instructions emulated in AVX512F (tests only; needs avx512_enabled() and a
// dense BF16 weight).
void gemv_bf16_dot_emulated(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                            const float* bias);

// The Highway target (HWY_AVX3, HWY_AVX2, ...) dynamic dispatch picks now; cheap (no cpuid),
// and it follows hwy::SetSupportedTargetsForTest.
int64_t chosen_simd_target();

// GEMM with bfloat16 dot products (AVX512_BF16); only call when bf16_gemm_supported().
bool bf16_gemm_supported();
void gemm_bf16(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias);
// The same GEMM with its two bf16 instructions emulated in AVX512F (same values but for
// denormals), so that its blocking is tested on CPUs without AVX512_BF16; for tests only, and
// only when avx512_enabled().
void gemm_bf16_emulated(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                        const float* bias);

}  // namespace matmul_detail
}  // namespace vlm
