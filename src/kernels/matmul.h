// Matrix multiplication y = x · Wᵀ (+ bias) with float32 activations and weights stored as
// f32, bf16, f16 or MLX affine-quantized integers (2, 3, 4, 5, 6, 8 bits).
//
// MLX packing: each weight row is a little-endian bit stream in uint32 words; element i
// occupies bits [i*bits, (i+1)*bits) (3/5/6-bit values may straddle words). Dequantized value
// = scale[g] * q + bias[g] for group g = i / group_size.
#pragma once
#include <memory>
#include <string>

#include "core/compute.h"
#include "core/tensor.h"

namespace vlm {

enum class MatMulPrecision : int;

class MatMulWeight {
 public:
  MatMulWeight() = default;
  // W is [N, K] in F32, BF16 or F16. The tensor's storage is kept alive (zero-copy).
  static MatMulWeight dense(const Tensor& w, const std::string& where);
  // packed U32 [N, K*bits/32], scales/biases [N, K/group_size] in F32, BF16 or F16.
  static MatMulWeight quantized(const Tensor& packed, const Tensor& scales, const Tensor& biases, int bits,
                                int group_size, const std::string& where);

  bool defined() const { return impl_ != nullptr; }
  int64_t rows() const;  // N (output features)
  int64_t cols() const;  // K (input features)
  bool is_quantized() const;
  int bits() const;  // 0 for dense
  int group_size() const;
  DType storage_dtype() const;  // element type of dense weights (U32 when quantized)
  size_t weight_bytes() const;  // bytes streamed by one full pass over W

  // Load-time step for the precision a model will run at (call once, before sharing the weight).
  // Fast mode on AVX-512 CPUs (matmul_repack.h): 2/4/8-bit weights (with AVX512_VNNI) become
  // 16-row interleaved panels for the int8 VNNI kernels; dense bf16 weights become the GEMMs'
  // 64-row panels of bf16 pairs (the bf16 GEMM copies its K slices from them, the f32 GEMM widens
  // them, the GEMV streams them). The references to the original tensors are dropped (their
  // mmapped pages are paged out of this process), so memory does not grow. A prepared weight still
  // runs every precision, but exact mode then reads the repacked copy (same float values, not
  // bit-identical sums to an unprepared weight in the GEMV): do not prepare weights that run in
  // exact mode. Anything else: no-op.
  void prepare(const Compute& env);
  bool is_repacked() const;

  // out[K] = row r of W in float32.
  void dequantize_row(int64_t r, float* out) const;
  // y[M, N] = x[M, K] · Wᵀ (+ bias[N]); x and y row-major contiguous; runs on env's threads at
  // env's precision (see MatMulPrecision).
  void forward(const Compute& env, const float* x, int64_t M, float* y, const float* bias = nullptr) const;
  // The same with the kernel arithmetic chosen explicitly (tests and kernel benchmarks).
  void forward_as(MatMulPrecision precision, ThreadPool& pool, const float* x, int64_t M, float* y,
                  const float* bias = nullptr) const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

// Arithmetic of one matmul. kF32 accumulates exact float32 products everywhere (Precision::kExact).
// kBF16 (GEMM, M > 6 rows; and GEMV of dense BF16 weights) rounds activations (and GEMM
// weights) to bfloat16 and uses AVX512_BF16 dot products (~3 significant digits per product;
// GEMV: |Δy| <= 2^-8·Σ|x·w|); ignored without AVX512_BF16. kInt8 (2/4/8-bit quantized weights
// repacked by prepare() on AVX512_VNNI CPUs, GEMV and GEMM) quantizes activations per weight group
// to 15 bits held as two int8 planes (error <= 1/32512 of the group's largest |x|) and multiplies
// them with the weights' integer values exactly (matmul_int8.h); unprepared and other weights stay
// float32-exact.
enum class MatMulPrecision : int { kF32, kBF16, kInt8 };
// What Precision::kFast means for a weight: kInt8 for 2/4/8-bit weights, kBF16 for dense bf16
// weights (activations rounded, weights as stored), kF32 for everything else.
MatMulPrecision matmul_precision_for(Precision precision, const MatMulWeight& w);
// True when kBF16 actually takes effect on this CPU.
bool matmul_bf16_supported();
// True when kInt8 takes effect for this CPU (it still needs 2/4/8-bit weights).
bool matmul_int8_supported();

// Unpacks element i of an MLX-packed row (reference helper, also used by tests).
uint32_t mlx_unpack(const uint32_t* row, int64_t i, int bits);

}  // namespace vlm
