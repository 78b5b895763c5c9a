// Load-time repacking (MatMulWeight::prepare in fast mode): 2/4/8-bit MLX weights for VNNI, and
// dense bf16 weights into the GEMM's panel layout (RepackedBf16, at the end).
//
// Quantized weights:
// Layout: rows are cut into panels of 16 (zero rows pad the last). A panel stores its groups one
// after another; each group is its 16 scales, its 16 biases (checkpoint dtype: exact, and 16-bit
// ones stream half the bytes of f32) and then 16·group·bits/8 bytes of weights in 64-byte blocks.
// Dword l of a block belongs to row l and holds V = 32/bits consecutive values of it as P =
// 8/bits planes: byte b, bits [j·bits, (j+1)·bits) = value 4j + b. One shift+and extracts plane j
// as bytes, and one vpdpbusd against the 4 activations of plane j (broadcast to all lanes) adds
// 4 products to each of the 16 rows, so every accumulator lane is one output row: no horizontal
// sums, no per-lane scale lookups, and a panel's group is one contiguous stream.
#pragma once
#include <cstdint>
#include <memory>

#include "kernels/matmul_internal.h"

namespace vlm::matmul_detail {

struct RepackedQuant {
  static constexpr int kPanelRows = 16;
  int64_t N = 0, K = 0, panels = 0, groups = 0;
  int bits = 0, group = 0;
  DType sdtype = DType::F32;  // scales and biases
  int64_t scale_bytes = 0;    // 32 values of sdtype per group
  int64_t group_stride = 0;   // scale_bytes + 2·group·bits
  int64_t panel_stride = 0;   // groups · group_stride
  Tensor data;                // U8 [panels · panel_stride], 64-byte aligned

  const uint8_t* panel(int64_t p) const { return data.data<uint8_t>() + p * panel_stride; }
  size_t bytes() const { return data.nbytes(); }
};

// True when p can be repacked (2/4/8 bits, group a multiple of 16 up to 512) and the CPU has
// AVX512_VNNI.
bool repack_supports(const MatMulWeight::Impl& p);
// The repacked copy of quantized weight p (which must satisfy repack_supports), built on pool.
std::shared_ptr<const RepackedQuant> repack_quantized(ThreadPool& pool, const MatMulWeight::Impl& p);
// Row r, columns [k0, k0 + n) as float32: the same values as dequantize_range on the original.
void repacked_dequantize_range(const RepackedQuant& rq, int64_t r, int64_t k0, int64_t n, float* out);
// y = x·Wᵀ (+ bias) with two-plane int8 activations (MatMulPrecision::kInt8, matmul_int8.h), any M: GEMV for M <= 6 and
// a register-blocked GEMM above.
void repacked_forward_int8(ThreadPool& pool, const RepackedQuant& rq, const float* x, int64_t M, float* y,
                           const float* bias);
// The same with float32 products of the dequantized weights (exact mode on a prepared weight;
// summation order differs from the original-layout kernels, so not bit-identical to them).
void repacked_forward_f32(ThreadPool& pool, const RepackedQuant& rq, const float* x, int64_t M, float* y,
                          const float* bias);

// Dense bf16 weights as panels of 64 rows (zero rows pad the last), each [Kp][64] 32-bit words:
// word (j, l) of panel p holds row 64p + l's elements 2j (low half) and 2j + 1 (high half; zero
// past an odd K). It is the bf16 GEMM's panel (gemm_blocking.h) for every K slice, so the GEMMs
// read each slice as one contiguous 32 KB block instead of transposing rows K apart at every
// call, and the GEMV streams each panel once with every accumulator lane an output row.
struct RepackedBf16 {
  static constexpr int64_t kPanelRows = 64;
  int64_t N = 0, K = 0, Kp = 0, panels = 0;
  Tensor data;  // U8 [panels · Kp · 64 · 4], 64-byte aligned

  const uint32_t* panel(int64_t p) const { return data.data<uint32_t>() + p * Kp * kPanelRows; }
  size_t bytes() const { return size_t(panels * Kp * kPanelRows * 4); }
};

// True when p is a dense BF16 weight and the CPU runs the AVX-512 kernels.
bool repack_bf16_supports(const MatMulWeight::Impl& p);
std::shared_ptr<const RepackedBf16> repack_bf16(ThreadPool& pool, const MatMulWeight::Impl& p);
// Row r, columns [k0, k0 + n) as float32 (exact: bf16 widens without rounding).
void repacked_bf16_dequantize_range(const RepackedBf16& rb, int64_t r, int64_t k0, int64_t n, float* out);
// y = x·Wᵀ (+ bias) for M <= 6 rows: bf16 dot products of bf16-rounded activations when
// `bf16_dot` (MatMulPrecision::kBF16 on AVX512-BF16 CPUs), else float32 products of the exact
// weights. gemv_panels_bf16_emulated: the bf16 variant with the instructions emulated (tests).
void gemv_panels_bf16(ThreadPool& pool, const RepackedBf16& rb, const float* x, int64_t M, float* y, const float* bias,
                      bool bf16_dot);
void gemv_panels_bf16_emulated(ThreadPool& pool, const RepackedBf16& rb, const float* x, int64_t M, float* y,
                               const float* bias);

// A 64-byte-aligned U8 tensor of n bytes whose 2 MiB-aligned interior asks for transparent huge pages.
Tensor alloc_huge_bytes(int64_t n);

}  // namespace vlm::matmul_detail
