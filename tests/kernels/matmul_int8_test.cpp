// Opt-in MatMulPrecision::kInt8 and the precision switch, against the double reference. The
// int8 error bound is derived, not tuned: rounding x to the group's int8 grid moves each value
// by at most amax_g/254, so |Δy| <= Σ_k amax_g(k)/254 · (|s·q| + |b|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "matmul_ref.h"

namespace vlm {
namespace {

using namespace matmul_test;

TEST(MatMulInt8, EveryBitsGroupAndRowCount) {
  if (!matmul_int8_supported()) GTEST_SKIP() << "CPU has no AVX512_VNNI";
  PrecisionScope scope(MatMulPrecision::kInt8);
  std::mt19937 rng(11);
  for (int threads : {1, 2}) {
    kernel_env().set_threads(threads);
    for (int bits : {2, 4, 8})
      for (int group : {32, 64, 128})
        for (DType st : {DType::BF16, DType::F16, DType::F32}) {
          // K = 9 groups: a partial last block of words; N odd: a row-block tail.
          const int64_t K = group * 9, N = 37;
          RefWeight r = make_quant(rng, N, K, bits, group, st);
          for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 13, 64})
            check_forward(r, M, rng, M % 2 == 1,
                          "int8 bits=" + std::to_string(bits) + " group=" + std::to_string(group) +
                              " threads=" + std::to_string(threads),
                          2e-6, int8_bound(r, group));
        }
  }
}

// Big enough (in weight bytes) that GEMV and GEMM split rows over both threads.
TEST(MatMulInt8, LargeTwoThreads) {
  if (!matmul_int8_supported()) GTEST_SKIP() << "CPU has no AVX512_VNNI";
  PrecisionScope scope(MatMulPrecision::kInt8);
  kernel_env().set_threads(2);
  std::mt19937 rng(12);
  RefWeight r = make_quant(rng, 611, 1536, 4, 64, DType::BF16);
  for (int64_t M : {1, 3, 50}) check_forward(r, M, rng, true, "int8 large", 2e-6, int8_bound(r, 64));
}

// Weights kInt8 cannot take (3/6-bit, dense) stay float32-exact.
TEST(MatMulInt8, OtherWeightsFallBack) {
  PrecisionScope scope(MatMulPrecision::kInt8);
  std::mt19937 rng(13);
  std::vector<RefWeight> ws;
  ws.push_back(make_quant(rng, 21, 384, 3, 64, DType::BF16));
  ws.push_back(make_quant(rng, 21, 384, 6, 32, DType::F16));
  ws.push_back(make_dense(rng, 45, 259, DType::BF16));
  for (const auto& w : ws) {
    for (int64_t M : {1, 2, 5}) check_forward(w, M, rng, M != 2, "GEMV under int8");
    check_forward(w, 20, rng, true, "GEMM under int8");
  }
}

// The default f32 GEMV split over two threads (weights above the single-thread cutoff).
TEST(MatMulF32, LargeTwoThreads) {
  PrecisionScope scope(MatMulPrecision::kF32);
  kernel_env().set_threads(2);
  std::mt19937 rng(14);
  for (int bits : {2, 4, 8}) {
    RefWeight r = make_quant(rng, 515, 1024, bits, 64, DType::BF16);
    for (int64_t M : {1, 2, 3, 4, 6}) check_forward(r, M, rng, M == 1, "f32 large bits=" + std::to_string(bits));
  }
  RefWeight d = make_dense(rng, 301, 1000, DType::BF16);
  for (int64_t M : {1, 5}) check_forward(d, M, rng, true, "f32 large bf16");
}

TEST(PrecisionSetting, ParsesNamesAndMapsFastPerWeight) {
  EXPECT_EQ(parse_precision("exact"), Precision::kExact);
  EXPECT_EQ(parse_precision("fast"), Precision::kFast);
  EXPECT_THROW(parse_precision("int4"), Error);
  EXPECT_THROW(parse_precision(""), Error);
  std::mt19937 rng(3);
  RefWeight q4 = make_quant(rng, 8, 64, 4, 32, DType::BF16), q3 = make_quant(rng, 8, 64, 3, 32, DType::BF16);
  RefWeight dense = make_dense(rng, 8, 64, DType::BF16);
  EXPECT_EQ(matmul_precision_for(Precision::kExact, q4.w), MatMulPrecision::kF32);
  EXPECT_EQ(matmul_precision_for(Precision::kFast, q4.w), MatMulPrecision::kInt8);
  EXPECT_EQ(matmul_precision_for(Precision::kFast, q3.w), MatMulPrecision::kBF16);
  EXPECT_EQ(matmul_precision_for(Precision::kFast, dense.w), MatMulPrecision::kBF16);
}

}  // namespace
}  // namespace vlm
