// Entry points of the hand-written AVX-512 attention (attention_avx512.cpp). Not part of the
// public API: vlm::attention (ops.h) picks the kernel.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/ops.h"

namespace vlm::ops_detail {

// Tiled flash attention; false (doing nothing) when AVX-512 is unavailable or disabled. `fast`
// uses bf16 products where the CPU has AVX512-BF16 (f32 otherwise).
bool attention_avx512(ThreadPool& pool, bool fast, const float* q, int64_t q_stride, const float* k, const float* v,
                      int64_t kv_stride, int64_t T, int64_t S, int q_heads, int kv_heads, int head_dim, float scale,
                      const AttentionMask& mask, float* out);
// The same with the bf16 instructions emulated in AVX512F, so `fast` takes the bf16 path on any
// AVX-512 CPU (tests only).
bool attention_avx512_emulated_bf16(ThreadPool& pool, bool fast, const float* q, int64_t q_stride, const float* k,
                                    const float* v, int64_t kv_stride, int64_t T, int64_t S, int q_heads, int kv_heads,
                                    int head_dim, float scale, const AttentionMask& mask, float* out);

}  // namespace vlm::ops_detail
