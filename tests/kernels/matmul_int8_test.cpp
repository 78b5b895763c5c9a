// The precision switch, and kInt8 on weights it does not take, against the double reference.
// (kInt8 itself runs on weights repacked by prepare(): matmul_repack_test.cpp.)
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

// Weights kInt8 cannot take (3/6-bit, dense, and 4-bit ones not repacked by prepare()) stay
// float32-exact.
TEST(MatMulInt8, OtherWeightsFallBack) {
  PrecisionScope scope(MatMulPrecision::kInt8);
  std::mt19937 rng(13);
  std::vector<RefWeight> ws;
  ws.push_back(make_quant(rng, 21, 384, 4, 64, DType::BF16));
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
  EXPECT_EQ(matmul_precision_for(Precision::kFast, q3.w), MatMulPrecision::kF32);
  EXPECT_EQ(matmul_precision_for(Precision::kFast, dense.w), MatMulPrecision::kBF16);
  // Rounding f32 or f16 weights to bf16 would lose bits: they stay exact.
  for (DType t : {DType::F32, DType::F16})
    EXPECT_EQ(matmul_precision_for(Precision::kFast, make_dense(rng, 8, 64, t).w), MatMulPrecision::kF32);
}

}  // namespace
}  // namespace vlm
