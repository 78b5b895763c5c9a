// MatMulWeight against a double-precision scalar reference with an independent MLX packer.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <tuple>
#include <vector>

#include "core/thread_pool.h"
#include "hwy/targets.h"
#include "kernels/matmul_internal.h"
#include "kernels/matmul_x86.h"
#include "kernels/ops.h"
#include "matmul_ref.h"

namespace vlm {
namespace {

using namespace matmul_test;

TEST(MatMul, DenseAllDtypesAndShapes) {
  std::mt19937 rng(1);
  for (DType dt : {DType::F32, DType::BF16, DType::F16})
    for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 7}, {33, 100}, {67, 259}, {40, 512}}) {
      RefWeight r = make_dense(rng, N, K, dt);
      for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 64, 129})
        check_forward(r, M, rng, M % 2 == 1,
                      std::string(dtype_name(dt)) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
    }
}

TEST(MatMul, QuantizedEveryBitsGroupAndScaleType) {
  std::mt19937 rng(2);
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int group : {32, 64, 128})
      for (DType st : {DType::F16, DType::BF16, DType::F32}) {
        const int64_t K = group == 128 ? 640 : group * 9, N = 37;
        RefWeight r = make_quant(rng, N, K, bits, group, st);
        for (int64_t M : {1, 3, 7, 129})
          check_forward(
              r, M, rng, M == 3,
              "bits=" + std::to_string(bits) + " group=" + std::to_string(group) + " scales=" + dtype_name(st));
      }
}

TEST(MatMul, QuantizedManyRowCounts) {
  std::mt19937 rng(3);
  for (int bits : {4, 8, 3}) {
    RefWeight r = make_quant(rng, 70, 1024, bits, 64, DType::BF16);
    for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 8, 64, 129}) check_forward(r, M, rng, true, "bits=" + std::to_string(bits));
  }
  // Single group per row and a K smaller than one SIMD block of words.
  RefWeight small = make_quant(rng, 3, 32, 4, 32, DType::F16);
  for (int64_t M : {1, 2, 9}) check_forward(small, M, rng, false, "tiny");
}

TEST(MatMul, DequantizeRowMatchesReference) {
  std::mt19937 rng(4);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    RefWeight r = make_quant(rng, 5, 256, bits, 32, DType::F32);
    std::vector<float> row(256);
    for (int64_t n = 0; n < 5; ++n) {
      r.w.dequantize_row(n, row.data());
      for (int64_t k = 0; k < 256; ++k) ASSERT_NEAR(row[size_t(k)], r.dense[size_t(n * 256 + k)], 1e-6) << bits;
    }
  }
  RefWeight d = make_dense(rng, 3, 19, DType::BF16);
  std::vector<float> row(19);
  d.w.dequantize_row(2, row.data());
  for (int64_t k = 0; k < 19; ++k) EXPECT_EQ(row[size_t(k)], float(d.dense[size_t(2 * 19 + k)]));
  EXPECT_THROW(d.w.dequantize_row(3, row.data()), Error);
}

TEST(MatMul, MlxUnpackMatchesPacker) {
  std::mt19937 rng(5);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    std::vector<uint32_t> q(96);
    for (auto& v : q) v = rng() % (1u << bits);
    auto words = pack_mlx(q, bits);
    for (size_t i = 0; i < q.size(); ++i) ASSERT_EQ(mlx_unpack(words.data(), int64_t(i), bits), q[i]) << bits;
  }
}

TEST(MatMul, ThreadCountIndependent) {
  std::mt19937 rng(6);
  RefWeight q = make_quant(rng, 300, 512, 4, 64, DType::F16);
  RefWeight d = make_dense(rng, 300, 512, DType::BF16);
  for (const RefWeight* r : {&q, &d})
    for (int64_t M : {1, 3, 100}) {
      std::vector<float> x = random_vec(rng, M * 512), y1(size_t(M * 300)), y2(size_t(M * 300));
      kernel_env().set_threads(1);
      r->w.forward_as(MatMulPrecision::kF32, *kernel_env().pool, x.data(), M, y1.data());
      kernel_env().set_threads(2);
      r->w.forward_as(MatMulPrecision::kF32, *kernel_env().pool, x.data(), M, y2.data());
      for (size_t i = 0; i < y1.size(); ++i) ASSERT_NEAR(y1[i], y2[i], 1e-5 * (1 + std::fabs(y1[i]))) << M;
    }
  kernel_env().set_threads(0);
}

// Every SIMD target compiled in and supported here (AVX-512, AVX2, SSE4, emulated 128-bit...)
// has different vector widths, hence different block/tail splits in the quantized kernels.
TEST(MatMul, EverySimdTarget) {
  std::mt19937 rng(7);
  std::vector<RefWeight> ws;
  for (int bits : {2, 4, 8, 6}) ws.push_back(make_quant(rng, 19, 512, bits, bits == 2 ? 32 : 64, DType::BF16));
  ws.push_back(make_quant(rng, 9, 384, 4, 128, DType::F16));
  ws.push_back(make_dense(rng, 21, 77, DType::F16));
  ws.push_back(make_dense(rng, 21, 77, DType::BF16));
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    for (const auto& w : ws)
      for (int64_t M : {1, 2, 5, 13}) check_forward(w, M, rng, true, std::string("target ") + hwy::TargetName(target));
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Opt-in bf16 dot products: every operand rounded to 8 significant bits, so ~0.4% per product.
TEST(MatMul, Bf16PrecisionMode) {
  if (!matmul_bf16_supported()) GTEST_SKIP() << "CPU has no AVX512_BF16";
  std::mt19937 rng(8);
  std::vector<RefWeight> ws;
  ws.push_back(make_quant(rng, 45, 640, 4, 64, DType::BF16));
  ws.push_back(make_quant(rng, 33, 384, 3, 128, DType::F32));
  ws.push_back(make_dense(rng, 70, 259, DType::BF16));  // odd K: zero-padded last pair
  ws.push_back(make_dense(rng, 64, 512, DType::F32));
  kernel_env().precision = MatMulPrecision::kBF16;
  for (const auto& w : ws)
    for (int64_t M : {1, 7, 8, 64, 129}) check_forward(w, M, rng, M % 2 == 1, "bf16 mode", 8e-3);
  kernel_env().precision = MatMulPrecision::kF32;
}

// The exact (f32) GEMM adds each output's products with one FMA each in k order, starting from
// the bias: bit-for-bit the same as this scalar loop, for any tiling and thread count (1100 rows:
// more than one block of packed activations; N=130 with even K: the gathered panel rows and a tail).
TEST(MatMul, F32GemmBitExactFmaOrder) {
  std::mt19937 rng(10);
  for (int threads : {1, 2}) {
    kernel_env().set_threads(threads);
    for (DType dt : {DType::F32, DType::BF16, DType::F16})
      for (auto [M, N, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {7, 5, 3}, {13, 65, 129}, {64, 130, 300}, {97, 33, 257}, {8, 200, 64}, {1100, 40, 36}}) {
        RefWeight r = make_dense(rng, N, K, dt);
        std::vector<float> x = random_vec(rng, M * K), bias = random_vec(rng, N), y(size_t(M * N));
        r.w.forward_as(MatMulPrecision::kF32, *kernel_env().pool, x.data(), M, y.data(), bias.data());
        int bad = 0;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            float acc = bias[size_t(n)];
            for (int64_t k = 0; k < K; ++k)
              acc = std::fma(x[size_t(m * K + k)], float(r.dense[size_t(n * K + k)]), acc);
            if (y[size_t(m * N + n)] != acc && ++bad <= 3)
              ADD_FAILURE() << dtype_name(dt) << " M=" << M << " N=" << N << " K=" << K << " m=" << m << " n=" << n
                            << ": " << y[size_t(m * N + n)] << " != " << acc;
          }
      }
  }
  kernel_env().set_threads(0);
}

// The blocked bf16 GEMM (Precision::kFast for dense weights) over every tail: K around the
// 256-wide K slice and odd (zero-padded last pair), N around the 64-wide panels, M rows not a
// multiple of the 6-row register tile, rows split across tasks, more than one 1024-row packed
// block, 1 and 2 threads. Bound: activations (and non-bf16 weights) are rounded to bf16 with unit
// roundoff u = 2^-8, so each product is off by at most u·|x·w| (bf16 weights, exact) or
// (2u + u²)·|x·w|; f32 accumulation adds ~K·2^-24. `gemm` is the kernel under test (null: the
// weight's own forward in kBF16).
void check_bf16_gemm(
    const std::function<void(const MatMulWeight::Impl&, const float*, int64_t, float*, const float*)>& gemm) {
  std::mt19937 rng(9);
  const double u = std::ldexp(1.0, -8);
  PrecisionScope scope(MatMulPrecision::kBF16);
  auto check = [&](const RefWeight& r, int64_t M, bool with_bias, const std::string& what, double tol) {
    MatMulWeight::Impl impl;
    impl.N = r.w.rows();
    impl.K = r.w.cols();
    impl.w = r.stored;
    Forward forward;
    if (gemm) forward = [&](const float* x, int64_t m, float* y, const float* bias) { gemm(impl, x, m, y, bias); };
    check_forward(r, M, rng, with_bias, what, tol, nullptr, forward);
  };
  for (int threads : {1, 2}) {
    kernel_env().set_threads(threads);
    for (DType dt : {DType::BF16, DType::F32, DType::F16})
      for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{
               {1, 3}, {63, 256}, {65, 257}, {130, 511}, {200, 64}, {129, 1030}, {64, 2}})
        for (int64_t M : {7, 8, 9, 10, 11, 97}) {
          RefWeight r = make_dense(rng, N, K, dt);
          const double tol = (dt == DType::BF16 ? 1.0 : 2.0 + u) * u + double(K) * std::ldexp(1.0, -24);
          check(r, M, M != 8,
                std::string(dtype_name(dt)) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                    " threads=" + std::to_string(threads),
                tol);
        }
  }
  // Many rows: with few panels the tiles split into several tasks; past 1024 rows, two packed blocks.
  RefWeight big = make_dense(rng, 70, 300, DType::BF16);
  check(big, 1001, true, "M=1001", u + 300 * std::ldexp(1.0, -24));
  check(big, 1100, true, "M=1100", u + 300 * std::ldexp(1.0, -24));
}

TEST(MatMul, Bf16GemmTailsAndBound) {
  if (!matmul_bf16_supported()) GTEST_SKIP() << "CPU has no AVX512_BF16";
  check_bf16_gemm(nullptr);
}

// The same GEMM with vdpbf16ps and vcvtne2ps2bf16 emulated, on any AVX-512 CPU: its packing,
// blocking and tails are tested where the instructions are missing.
TEST(MatMul, Bf16GemmBlockingEmulated) {
  if (!matmul_detail::avx512_enabled()) GTEST_SKIP() << "no AVX-512";
  check_bf16_gemm([](const MatMulWeight::Impl& w, const float* x, int64_t M, float* y, const float* bias) {
    matmul_detail::gemm_bf16_emulated(*kernel_env().pool, w, x, M, y, bias);
  });
}

TEST(MatMul, RejectsBadShapes) {
  Tensor packed = Tensor::zeros(DType::U32, {4, 8});  // K = 64 at 4 bits
  Tensor s = Tensor::zeros(DType::F16, {4, 2});
  EXPECT_THROW(MatMulWeight::quantized(packed, s, s, 4, 64, "w"), Error);  // wants [4, 1]
  EXPECT_THROW(MatMulWeight::quantized(packed, s, s, 7, 32, "w"), Error);
  EXPECT_NO_THROW(MatMulWeight::quantized(packed, s, s, 4, 32, "w"));
  EXPECT_THROW(MatMulWeight::dense(Tensor::zeros(DType::U8, {2, 2}), "w"), Error);
  EXPECT_THROW(MatMulWeight::dense(Tensor::zeros(DType::F32, {2, 2, 2}), "w"), Error);
}

}  // namespace
}  // namespace vlm

namespace vlm {
namespace {

// The work counters behind `vlm bench`'s GFLOP/s and GB/s: 2·M·N·K per matmul and one pass over the
// weights per call, however many rows; attention: 4·head_dim per visible query-key pair and head.
TEST(ComputeCounters, CountMatmulFlopsWeightBytesAndVisibleAttentionPairs) {
  std::mt19937 rng(9);
  const Compute env = Compute::make(1);
  matmul_test::RefWeight r = matmul_test::make_quant(rng, 37, 128, 4, 64, DType::BF16);
  std::vector<float> x(3 * 128, 0.5f), y(3 * 37);
  r.w.forward(env, x.data(), 3, y.data());
  ComputeCounters::Snapshot s = env.snapshot();
  EXPECT_EQ(s.flops, 2 * 3 * 37 * 128);
  EXPECT_EQ(s.weight_bytes, int64_t(r.w.weight_bytes()));
  EXPECT_GT(s.weight_bytes, 37 * 128 / 2);  // 4-bit values plus group scales and biases

  // Causal attention over 5 queries after 3 cached keys: query i sees 4 + i keys.
  const int64_t T = 5, S = 8, heads = 2, dim = 8;
  std::vector<float> q(T * heads * dim, 0.1f), kv(S * heads * dim, 0.2f), out(T * heads * dim);
  AttentionMask mask;
  mask.causal = true;
  mask.q_offset = 3;
  attention(env, q.data(), heads * dim, kv.data(), kv.data(), heads * dim, T, S, heads, heads, dim, 1.0f, mask,
            out.data());
  const int64_t pairs = 4 + 5 + 6 + 7 + 8;
  EXPECT_EQ(env.snapshot().flops - s.flops, 4 * pairs * dim * heads);
  EXPECT_EQ(env.snapshot().weight_bytes, s.weight_bytes);
  // Copies of an environment share its counters; an environment without them counts nothing.
  Compute copy = env;
  r.w.forward(copy, x.data(), 1, y.data());
  EXPECT_EQ(env.snapshot().weight_bytes, 2 * s.weight_bytes);
  Compute uncounted = env;
  uncounted.counters = nullptr;
  r.w.forward(uncounted, x.data(), 1, y.data());
  EXPECT_EQ(uncounted.snapshot().flops, 0);
  EXPECT_EQ(env.snapshot().weight_bytes, 2 * s.weight_bytes);
}

}  // namespace
}  // namespace vlm
