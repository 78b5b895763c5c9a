// MLX affine quantization (the writer side, as mlx.core.quantize does on the CPU): used to
// produce mlx-community-style checkpoints (synthetic benchmarks, tests).
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace vlm::nn {

struct MlxQuantized {
  Tensor packed;  // U32 [rows, cols * bits / 32]
  Tensor scales;  // [rows, cols / group_size] in `param_dtype`
  Tensor biases;
};

// Per group: scale = (max - min) / (2^bits - 1), anchored on the end of larger magnitude so that
// that end is exactly representable (scales may be negative); values packed LSB-first.
// Rows are split over `pool` when one is given.
MlxQuantized mlx_quantize(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                          DType param_dtype = DType::BF16, ThreadPool* pool = nullptr);

}  // namespace vlm::nn
