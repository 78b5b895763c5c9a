#include "nn/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/thread_pool.h"

namespace vlm::nn {

namespace {
float round_to(DType t, float v) {
  if (t == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  if (t == DType::F16) return f16_to_f32(f32_to_f16(v));
  return v;
}
void store(DType t, void* base, int64_t i, float v) {
  if (t == DType::F32)
    static_cast<float*>(base)[i] = v;
  else if (t == DType::BF16)
    static_cast<uint16_t*>(base)[i] = f32_to_bf16(v);
  else
    static_cast<uint16_t*>(base)[i] = f32_to_f16(v);
}
}  // namespace

MlxQuantized mlx_quantize(const float* w, int64_t rows, int64_t cols, int bits, int group_size, DType param_dtype,
                          ThreadPool* pool) {
  if (cols % group_size != 0) fail("mlx_quantize: ", cols, " columns are not a multiple of group size ", group_size);
  if ((cols * bits) % 32 != 0) fail("mlx_quantize: ", cols, " columns of ", bits, " bits do not fill whole words");
  const int64_t words = cols * bits / 32, groups = cols / group_size;
  const float qmax = float((1 << bits) - 1);
  MlxQuantized out;
  out.packed = Tensor::zeros(DType::U32, {rows, words});
  out.scales = Tensor::empty(param_dtype, {rows, groups});
  out.biases = Tensor::empty(param_dtype, {rows, groups});
  uint32_t* packed = out.packed.data<uint32_t>();
  auto quantize_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      uint32_t* row = packed + r * words;
      for (int64_t g = 0; g < groups; ++g) {
        const float* x = w + r * cols + g * group_size;
        float lo = *std::min_element(x, x + group_size), hi = *std::max_element(x, x + group_size);
        float scale = std::max((hi - lo) / qmax, 1e-7f);
        float edge = hi;
        if (std::abs(lo) > std::abs(hi))
          edge = lo;
        else
          scale = -scale;
        float q0 = std::rint(edge / scale), bias = 0.f;
        if (q0 != 0.f) {
          scale = edge / q0;
          bias = edge;
        }
        // Quantize against the stored (rounded) parameters so dequantization is consistent.
        float s = round_to(param_dtype, scale), b = round_to(param_dtype, bias);
        store(param_dtype, out.scales.raw(), r * groups + g, s);
        store(param_dtype, out.biases.raw(), r * groups + g, b);
        for (int64_t j = 0; j < group_size; ++j) {
          float q = std::clamp(std::rint((x[j] - bias) / scale), 0.f, qmax);
          int64_t bit = (g * group_size + j) * bits;
          uint64_t v = uint64_t(q) << (bit & 31);
          row[bit >> 5] |= uint32_t(v);
          if ((bit & 31) + bits > 32) row[(bit >> 5) + 1] |= uint32_t(v >> 32);
        }
      }
    }
  };
  if (pool)
    pool->parallel_for(rows, 64, quantize_rows);
  else
    quantize_rows(0, rows);
  return out;
}

}  // namespace vlm::nn
