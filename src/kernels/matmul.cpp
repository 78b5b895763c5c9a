#include "kernels/matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"

namespace vlm {

struct MatMulWeight::Impl {
  int64_t N = 0, K = 0;
  bool quantized = false;
  int bits = 0, group = 0;
  Tensor w;  // dense [N, K] or packed [N, K*bits/32]
  Tensor scales, biases;  // [N, K/group]
};

uint32_t mlx_unpack(const uint32_t* row, int64_t i, int bits) {
  int64_t bit = i * bits;
  int64_t word = bit >> 5;
  int shift = int(bit & 31);
  uint64_t v = row[word] >> shift;
  if (shift + bits > 32) v |= uint64_t(row[word + 1]) << (32 - shift);
  return uint32_t(v & ((1u << bits) - 1));
}

namespace {
float load_float(DType t, const void* base, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default: return 0.f;
  }
}
bool is_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }
}  // namespace

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
           shape_str(packed.shape()), " with bits=", bits, ", group_size=", group_size, " implies ",
           shape_str(sshape));
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

int64_t MatMulWeight::rows() const { return impl_ ? impl_->N : 0; }
int64_t MatMulWeight::cols() const { return impl_ ? impl_->K : 0; }
bool MatMulWeight::is_quantized() const { return impl_ && impl_->quantized; }
int MatMulWeight::bits() const { return impl_ ? impl_->bits : 0; }
int MatMulWeight::group_size() const { return impl_ ? impl_->group : 0; }
DType MatMulWeight::storage_dtype() const { return impl_ ? impl_->w.dtype() : DType::F32; }
size_t MatMulWeight::weight_bytes() const {
  if (!impl_) return 0;
  return impl_->w.nbytes() + (impl_->quantized ? impl_->scales.nbytes() + impl_->biases.nbytes() : 0);
}

void MatMulWeight::dequantize_row(int64_t r, float* out) const {
  const Impl& p = *impl_;
  if (r < 0 || r >= p.N) fail("MatMulWeight::dequantize_row: row ", r, " out of range [0, ", p.N, ")");
  if (!p.quantized) {
    const char* base = static_cast<const char*>(p.w.raw()) + r * p.K * int64_t(dtype_size(p.w.dtype()));
    for (int64_t k = 0; k < p.K; ++k) out[k] = load_float(p.w.dtype(), base, k);
    return;
  }
  const uint32_t* row = p.w.data<uint32_t>() + r * p.w.dim(1);
  int64_t groups = p.K / p.group;
  for (int64_t g = 0; g < groups; ++g) {
    float s = load_float(p.scales.dtype(), p.scales.raw(), r * groups + g);
    float b = load_float(p.biases.dtype(), p.biases.raw(), r * groups + g);
    for (int64_t j = 0; j < p.group; ++j) {
      int64_t k = g * p.group + j;
      out[k] = s * float(mlx_unpack(row, k, p.bits)) + b;
    }
  }
}

void MatMulWeight::forward(const float* x, int64_t M, float* y, const float* bias) const {
  const Impl& p = *impl_;
  const int64_t N = p.N, K = p.K;
  // Blocks of output features; each block dequantizes a row once and reuses it for all M rows.
  thread_pool().parallel_for(N, 16, [&](int64_t n0, int64_t n1) {
    std::vector<float> wrow(static_cast<size_t>(K));
    for (int64_t n = n0; n < n1; ++n) {
      dequantize_row(n, wrow.data());
      float b = bias ? bias[n] : 0.f;
      for (int64_t m = 0; m < M; ++m) {
        const float* xr = x + m * K;
        float acc = 0.f;
        for (int64_t k = 0; k < K; ++k) acc += xr[k] * wrow[k];
        y[m * N + n] = acc + b;
      }
    }
  });
}

}  // namespace vlm
