#include "kernels/matmul.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hwy/detect_targets.h"
#include "kernels/matmul_internal.h"
#include "kernels/matmul_repack.h"
#include "kernels/matmul_x86.h"

namespace vlm {

uint32_t mlx_unpack(const uint32_t* row, int64_t i, int bits) {
  int64_t bit = i * bits;
  int64_t word = bit >> 5;
  int shift = int(bit & 31);
  uint64_t v = row[word] >> shift;
  if (shift + bits > 32) v |= uint64_t(row[word + 1]) << (32 - shift);
  return uint32_t(v & ((1u << bits) - 1));
}

namespace {
bool is_float(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16;
}
// Below this many activation rows, streaming the weights once per row block (GEMV) beats
// dequantizing them into panels (GEMM).
constexpr int64_t kGemvMaxRows = 6;
}  // namespace

bool matmul_int8_supported() {
  return matmul_detail::avx512_vnni_enabled();
}

bool matmul_bf16_supported() {
  return matmul_detail::bf16_gemm_supported();
}

namespace matmul_detail {

bool avx512_enabled() {
#ifdef VLM_X86_KERNELS
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  // Highway numbers better targets with lower bits: at or below HWY_AVX3 means AVX-512.
  return cpu && chosen_simd_target() <= HWY_AVX3;
#else
  return false;
#endif
}

bool avx512_vnni_enabled() {
#ifdef VLM_X86_KERNELS
  static const bool cpu = __builtin_cpu_supports("avx512vnni");
  return cpu && avx512_enabled();
#else
  return false;
#endif
}

float load_float(DType t, const void* base, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default: return 0.f;
  }
}

void dequantize_range(const MatMulWeight::Impl& p, int64_t r, int64_t k0, int64_t n, float* out) {
  if (p.bf16_panels) return repacked_bf16_dequantize_range(*p.bf16_panels, r, k0, n, out);
  if (!p.quantized) {
    const char* base = static_cast<const char*>(p.w.raw()) + r * p.K * int64_t(dtype_size(p.w.dtype()));
    if (p.w.dtype() == DType::F32) {
      std::memcpy(out, reinterpret_cast<const float*>(base) + k0, size_t(n) * sizeof(float));
      return;
    }
    const uint16_t* h = reinterpret_cast<const uint16_t*>(base) + k0;
    if (p.w.dtype() == DType::BF16) {
      for (int64_t k = 0; k < n; ++k) out[k] = bf16_to_f32(h[k]);
    } else {
      for (int64_t k = 0; k < n; ++k) out[k] = f16_to_f32(h[k]);
    }
    return;
  }
  if (p.repacked) return repacked_dequantize_range(*p.repacked, r, k0, n, out);
  if (dequantize_range_avx512(p, r, k0, n, out)) return;
  const uint32_t* row = p.w.data<uint32_t>() + r * p.w.dim(1);
  const int bits = p.bits;
  const uint32_t mask = (1u << bits) - 1;
  const int64_t groups = p.K / p.group;
  const int64_t end = k0 + n;
  for (int64_t k = k0; k < end;) {
    const int64_t g = k / p.group;
    const int64_t gend = std::min(end, (g + 1) * p.group);
    const float s = load_float(p.scales.dtype(), p.scales.raw(), r * groups + g);
    const float b = load_float(p.biases.dtype(), p.biases.raw(), r * groups + g);
    if (32 % bits == 0) {  // whole words: no value straddles a word boundary
      const int e = 32 / bits;
      for (; k < gend && k % e != 0; ++k) out[k - k0] = s * float(mlx_unpack(row, k, bits)) + b;
      for (; k + e <= gend; k += e) {
        const uint32_t w = row[k / e];
        for (int j = 0; j < e; ++j) out[k - k0 + j] = s * float((w >> (j * bits)) & mask) + b;
      }
    }
    for (; k < gend; ++k) out[k - k0] = s * float(mlx_unpack(row, k, bits)) + b;
  }
}

}  // namespace matmul_detail

MatMulWeight MatMulWeight::dense(const Tensor& w, const std::string& where) {
  if (w.ndim() != 2) fail(where, ": weight must be 2-D, got shape ", shape_str(w.shape()));
  if (!is_float(w.dtype())) fail(where, ": weight dtype ", dtype_name(w.dtype()), " is not F32, BF16 or F16");
  auto impl = std::make_shared<Impl>();
  impl->N = w.dim(0);
  impl->K = w.dim(1);
  impl->w = w.contiguous();
  MatMulWeight m;
  m.impl_ = impl;
  return m;
}

MatMulWeight MatMulWeight::quantized(const Tensor& packed, const Tensor& scales, const Tensor& biases, int bits,
                                     int group_size, const std::string& where) {
  if (packed.dtype() != DType::U32 || packed.ndim() != 2)
    fail(where, ": packed weight must be 2-D U32, got ", dtype_name(packed.dtype()), " ", shape_str(packed.shape()));
  if (bits < 2 || bits > 8 || bits == 7) fail(where, ": unsupported bits ", bits);
  if (group_size <= 0) fail(where, ": bad group size ", group_size);
  int64_t N = packed.dim(0);
  int64_t K = packed.dim(1) * 32 / bits;
  if (packed.dim(1) * 32 % bits != 0)
    fail(where, ": packed width ", packed.dim(1), " words is not a whole number of ", bits, "-bit values");
  if (K % group_size != 0)
    fail(where, ": ", K, " input features are not a multiple of group size ", group_size,
         " (bits/group_size in config.json disagree with the tensor shapes?)");
  Shape sshape = {N, K / group_size};
  for (const Tensor* t : {&scales, &biases}) {
    if (!is_float(t->dtype()))
      fail(where, ": scales/biases dtype ", dtype_name(t->dtype()), " is not F32, BF16 or F16");
    if (t->shape() != sshape)
      fail(where, ": scales/biases have shape ", shape_str(t->shape()), " but packed weight ",
           shape_str(packed.shape()), " with bits=", bits, ", group_size=", group_size, " implies ", shape_str(sshape));
  }
  auto impl = std::make_shared<Impl>();
  impl->N = N;
  impl->K = K;
  impl->quantized = true;
  impl->bits = bits;
  impl->group = group_size;
  impl->w = packed.contiguous();
  impl->scales = scales.contiguous();
  impl->biases = biases.contiguous();
  MatMulWeight m;
  m.impl_ = impl;
  return m;
}

int64_t MatMulWeight::rows() const {
  return impl_ ? impl_->N : 0;
}
int64_t MatMulWeight::cols() const {
  return impl_ ? impl_->K : 0;
}
bool MatMulWeight::is_quantized() const {
  return impl_ && impl_->quantized;
}
int MatMulWeight::bits() const {
  return impl_ ? impl_->bits : 0;
}
int MatMulWeight::group_size() const {
  return impl_ ? impl_->group : 0;
}
DType MatMulWeight::storage_dtype() const {
  if (impl_ && impl_->repacked) return DType::U32;
  if (impl_ && impl_->bf16_panels) return DType::BF16;
  return impl_ ? impl_->w.dtype() : DType::F32;
}
size_t MatMulWeight::weight_bytes() const {
  if (!impl_) return 0;
  if (impl_->repacked) return impl_->repacked->bytes();
  if (impl_->bf16_panels) return impl_->bf16_panels->bytes();
  return impl_->w.nbytes() + (impl_->quantized ? impl_->scales.nbytes() + impl_->biases.nbytes() : 0);
}

void MatMulWeight::dequantize_row(int64_t r, float* out) const {
  const Impl& p = *impl_;
  if (r < 0 || r >= p.N) fail("MatMulWeight::dequantize_row: row ", r, " out of range [0, ", p.N, ")");
  matmul_detail::dequantize_range(p, r, 0, p.K, out);
}

// ---- Load-time repacking (fast mode: quantized and dense bf16 weights) -----------------------
namespace {
// Drops the pages of a tensor that is no longer read (an mmapped checkpoint: re-read from the
// file if anything touches them again; anonymous memory is swapped, never lost).
void page_out(const Tensor& t) {
#ifdef MADV_PAGEOUT
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(t.raw()) + page - 1) / page * page;
  const uintptr_t end = (uintptr_t(t.raw()) + t.nbytes()) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
#else
  (void)t;
#endif
}
}  // namespace

void MatMulWeight::prepare(const Compute& env) {
  if (!impl_ || impl_->repacked || impl_->bf16_panels || env.precision != Precision::kFast) return;
  const bool quant = matmul_detail::repack_supports(*impl_);
  if (!quant && !matmul_detail::repack_bf16_supports(*impl_)) return;
  auto impl = std::make_shared<Impl>();
  impl->N = impl_->N;
  impl->K = impl_->K;
  impl->quantized = impl_->quantized;
  impl->bits = impl_->bits;
  impl->group = impl_->group;
  if (quant)
    impl->repacked = matmul_detail::repack_quantized(env.threads(), *impl_);
  else
    impl->bf16_panels = matmul_detail::repack_bf16(env.threads(), *impl_);
  for (const Tensor* t : {&impl_->w, &impl_->scales, &impl_->biases})
    if (t->defined()) page_out(*t);
  impl_ = impl;
}

bool MatMulWeight::is_repacked() const {
  return impl_ && (impl_->repacked || impl_->bf16_panels);
}
// ----------------------------------------------------------------------------------------------

MatMulPrecision matmul_precision_for(Precision precision, const MatMulWeight& w) {
  if (precision == Precision::kExact) return MatMulPrecision::kF32;
  if (w.is_quantized())
    return w.bits() == 2 || w.bits() == 4 || w.bits() == 8 ? MatMulPrecision::kInt8 : MatMulPrecision::kF32;
  // Only weights stored as bf16 lose nothing when kBF16 rounds them: f32/f16 ones stay exact.
  return w.storage_dtype() == DType::BF16 ? MatMulPrecision::kBF16 : MatMulPrecision::kF32;
}

void MatMulWeight::forward(const Compute& env, const float* x, int64_t M, float* y, const float* bias) const {
  if (impl_ && M > 0) env.count(2 * M * impl_->N * impl_->K, int64_t(weight_bytes()));
  forward_as(matmul_precision_for(env.precision, *this), env.threads(), x, M, y, bias);
}

void MatMulWeight::forward_as(MatMulPrecision prec, ThreadPool& pool, const float* x, int64_t M, float* y,
                              const float* bias) const {
  if (!impl_) fail("MatMulWeight::forward: weight is not defined");
  if (M <= 0 || impl_->N == 0) return;
  // Repacked quantized weights (prepare()) and the fast dense GEMV.
  if (impl_->repacked) {
    if (prec == MatMulPrecision::kInt8)
      return matmul_detail::repacked_forward_int8(pool, *impl_->repacked, x, M, y, bias);
    if (M > kGemvMaxRows) return matmul_detail::gemm(pool, *impl_, x, M, y, bias);  // dequantizes the repacked rows
    return matmul_detail::repacked_forward_f32(pool, *impl_->repacked, x, M, y, bias);
  }
  // Dense bf16 panels: the GEMMs read them in their panel fills.
  const bool bf16_dot = prec == MatMulPrecision::kBF16 && matmul_detail::bf16_gemm_supported();
  if (impl_->bf16_panels) {
    if (M <= kGemvMaxRows) return matmul_detail::gemv_panels_bf16(pool, *impl_->bf16_panels, x, M, y, bias, bf16_dot);
    if (bf16_dot) return matmul_detail::gemm_bf16(pool, *impl_, x, M, y, bias);
    return matmul_detail::gemm(pool, *impl_, x, M, y, bias);
  }
  if (prec == MatMulPrecision::kBF16 && M <= kGemvMaxRows && matmul_detail::gemv_bf16_dot_supports(*impl_))
    return matmul_detail::gemv_bf16_dot(pool, *impl_, x, M, y, bias);
  if (M <= kGemvMaxRows) {
    if (matmul_detail::gemv_avx512_supports(*impl_)) return matmul_detail::gemv_avx512(pool, *impl_, x, M, y, bias);
    matmul_detail::gemv(pool, *impl_, x, M, y, bias);
  } else if (prec == MatMulPrecision::kBF16 && matmul_detail::bf16_gemm_supported()) {
    matmul_detail::gemm_bf16(pool, *impl_, x, M, y, bias);
  } else {
    matmul_detail::gemm(pool, *impl_, x, M, y, bias);
  }
}

}  // namespace vlm
