// Weights repacked by MatMulWeight::prepare (fast mode) and the fast bf16 GEMV, against the
// double reference. Bounds are derived, not tuned:
// - int8: rounding x to its group's 15-bit grid (two int8 planes) moves each value by
//   <= amax_g/32512, so |Δy| <= Σ_k amax_g(k)/32512 · (|s·q| + |b|) (plus float32 rounding);
// - bf16 GEMV: x rounded to bf16 (8 significant bits, unit roundoff 2^-8) moves each value by
//   <= 2^-8·|x| (weights are bf16 already), so |Δy| <= 2^-8 · Σ|x·w| (plus float32 rounding).
#include "kernels/matmul_repack.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "hwy/targets.h"
#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"
#include "kernels/matmul_x86.h"
#include "matmul_ref.h"

namespace vlm {
namespace {

using namespace matmul_test;

RefWeight repacked(std::mt19937& rng, int64_t N, int64_t K, int bits, int group, DType st) {
  RefWeight r = make_quant(rng, N, K, bits, group, st);
  r.w.prepare(Compute{kernel_env().pool, Precision::kFast, nullptr, {}});
  EXPECT_TRUE(r.w.is_repacked());
  return r;
}

TEST(MatMulRepack, Int8EveryBitsGroupScaleTypeAndRowCount) {
  if (!matmul_int8_supported()) GTEST_SKIP() << "CPU has no AVX512_VNNI";
  PrecisionScope scope(MatMulPrecision::kInt8);
  std::mt19937 rng(21);
  for (int threads : {1, 2}) {
    kernel_env().set_threads(threads);
    for (int bits : {2, 4, 8})
      for (int group : {32, 64, 128})
        for (DType st : {DType::BF16, DType::F16, DType::F32}) {
          // N = 37: two full panels and a 5-row tail; K = 5 groups.
          const int64_t K = group * 5, N = 37;
          RefWeight r = repacked(rng, N, K, bits, group, st);
          for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 13})
            check_forward(r, M, rng, M % 2 == 1,
                          "repacked int8 bits=" + std::to_string(bits) + " group=" + std::to_string(group) +
                              " threads=" + std::to_string(threads),
                          2e-6, int8_bound(r, group));
        }
  }
}

// Large weights on two threads: 611 x 1536 4-bit, above the single-thread cutoff, with M large
// enough for several GEMM row chunks; and 1100 x 4096 8-bit, whose 4.3 MiB of panels go to a
// buffer aligned to 2 MiB for transparent huge pages with a size that is no multiple of that
// alignment (aligned_alloc rejected such sizes under ASan, which the sanitized model tests caught).
TEST(MatMulRepack, Int8LargeTwoThreads) {
  if (!matmul_int8_supported()) GTEST_SKIP() << "CPU has no AVX512_VNNI";
  PrecisionScope scope(MatMulPrecision::kInt8);
  kernel_env().set_threads(2);
  std::mt19937 rng(22);
  struct Case {
    int64_t N, K;
    int bits;
    std::vector<int64_t> rows;
    bool bias;
  };
  for (const Case& c : {Case{611, 1536, 4, {1, 6, 200}, true}, Case{1100, 4096, 8, {1, 7}, false}}) {
    RefWeight r = repacked(rng, c.N, c.K, c.bits, 64, DType::BF16);
    for (int64_t M : c.rows)
      check_forward(r, M, rng, c.bias, "repacked int8 large " + std::to_string(c.N) + "x" + std::to_string(c.K), 2e-6,
                    int8_bound(r, 64));
  }
}

// The largest integer sums the kernels can meet: 8-bit weights all 255 and 4-bit ones all 15 over
// 512-value groups (the largest repacked), activations all at ±amax, so both planes are at their
// extremes in every product; the int32 group sums must not wrap.
TEST(MatMulRepack, Int8LargestGroupDoesNotOverflow) {
  if (!matmul_int8_supported()) GTEST_SKIP() << "CPU has no AVX512_VNNI";
  PrecisionScope scope(MatMulPrecision::kInt8);
  for (int bits : {4, 8}) {
    const int64_t N = 16, K = 1024, G = 512;
    const uint32_t qmax = (1u << bits) - 1;
    std::vector<uint32_t> q(size_t(N * K), qmax);
    std::vector<uint32_t> words = pack_mlx(q, bits);
    Tensor packed = Tensor::empty(DType::U32, {N, K * bits / 32});
    std::copy(words.begin(), words.end(), packed.data<uint32_t>());
    Tensor scales = Tensor::from_floats(std::vector<float>(size_t(N * K / G), 1.f), {N, K / G});
    Tensor biases = Tensor::from_floats(std::vector<float>(size_t(N * K / G), 0.f), {N, K / G});
    MatMulWeight w = MatMulWeight::quantized(packed, scales, biases, bits, int(G), "test");
    w.prepare(Compute{kernel_env().pool, Precision::kFast, nullptr, {}});
    ASSERT_TRUE(w.is_repacked());
    for (float sign : {1.f, -1.f}) {
      std::vector<float> x(size_t(K), 3.f * sign);
      std::vector<float> y(static_cast<size_t>(N));
      w.forward_as(MatMulPrecision::kInt8, *kernel_env().pool, x.data(), 1, y.data());
      for (float v : y) EXPECT_NEAR(v, sign * 3.f * float(qmax) * float(K), 1e-5 * qmax * K) << "bits=" << bits;
    }
  }
}

// Repacking keeps every dequantized value bit for bit, and exact mode on a repacked weight is
// float32-exact (GEMV and GEMM).
TEST(MatMulRepack, SameValuesAndExactModeStillExact) {
  if (!matmul_int8_supported()) GTEST_SKIP() << "CPU has no AVX512_VNNI";
  PrecisionScope scope(MatMulPrecision::kF32);
  std::mt19937 rng(23);
  for (int bits : {2, 4, 8}) {
    std::mt19937 copy = rng;
    RefWeight orig = make_quant(copy, 19, 256, bits, 32, DType::F16);
    RefWeight r = repacked(rng, 19, 256, bits, 32, DType::F16);
    std::vector<float> a(256), b(256);
    for (int64_t n = 0; n < 19; ++n) {
      orig.w.dequantize_row(n, a.data());
      r.w.dequantize_row(n, b.data());
      ASSERT_EQ(a, b) << "bits=" << bits << " row " << n;
    }
    for (int64_t M : {1, 4, 20}) check_forward(r, M, rng, true, "exact on repacked bits=" + std::to_string(bits));
  }
}

TEST(MatMulRepack, PrepareOnlyActsInFastModeOnSupportedWeights) {
  std::mt19937 rng(24);
  auto& pool = kernel_env().pool;
  RefWeight q4 = make_quant(rng, 16, 128, 4, 64, DType::BF16), q3 = make_quant(rng, 16, 128, 3, 64, DType::BF16);
  RefWeight dense = make_dense(rng, 16, 128, DType::BF16), dense_f16 = make_dense(rng, 16, 128, DType::F16);
  q4.w.prepare(Compute{pool, Precision::kExact, nullptr, {}});
  dense.w.prepare(Compute{pool, Precision::kExact, nullptr, {}});
  EXPECT_FALSE(q4.w.is_repacked());
  EXPECT_FALSE(dense.w.is_repacked());
  q3.w.prepare(Compute{pool, Precision::kFast, nullptr, {}});
  dense_f16.w.prepare(Compute{pool, Precision::kFast, nullptr, {}});
  EXPECT_FALSE(q3.w.is_repacked());
  EXPECT_FALSE(dense_f16.w.is_repacked());  // only bf16 storage is the bf16 panels' element
  dense.w.prepare(Compute{pool, Precision::kFast, nullptr, {}});
  EXPECT_EQ(dense.w.is_repacked(), matmul_detail::avx512_enabled());
  EXPECT_EQ(dense.w.storage_dtype(), DType::BF16);
  EXPECT_FALSE(dense.w.is_quantized());
  q4.w.prepare(Compute{pool, Precision::kFast, nullptr, {}});
  EXPECT_EQ(q4.w.is_repacked(), matmul_int8_supported());
  EXPECT_EQ(q4.w.rows(), 16);
  EXPECT_EQ(q4.w.cols(), 128);
  EXPECT_EQ(q4.w.storage_dtype(), DType::U32);
  EXPECT_EQ(q4.w.bits(), 4);
  EXPECT_EQ(q4.w.group_size(), 64);
  // Preparing again is a no-op (the original tensors are gone).
  for (RefWeight* r : {&q4, &dense}) {
    const size_t bytes = r->w.weight_bytes();
    r->w.prepare(Compute{pool, Precision::kFast, nullptr, {}});
    EXPECT_EQ(r->w.weight_bytes(), bytes);
  }
}

// ---- Dense bf16 weights repacked into 64-row panels (fast mode on AVX-512 CPUs) ---------------
// Shapes: N around the 64-row panel (1, 63, 65, 130), K odd (zero high half of the last pair),
// tiny, and around the GEMMs' K slices (128 floats, 256 bf16 values).
const std::vector<std::pair<int64_t, int64_t>> kPanelShapes = {{1, 3},  {63, 256}, {65, 257}, {130, 300},
                                                               {64, 2}, {2, 1},    {70, 129}};

// Calls check(N, K, prepared, unprepared, rng) for every shape on 1 and 2 threads: one random bf16
// weight, prepared for fast mode (asserted repacked) and as loaded.
template <class Check>
void for_each_panel_weight(uint32_t seed, const Check& check) {
  std::mt19937 rng(seed);
  for (int threads : {1, 2}) {
    kernel_env().set_threads(threads);
    for (auto [N, K] : kPanelShapes) {
      std::mt19937 copy = rng;
      RefWeight r = make_dense(rng, N, K, DType::BF16), orig = make_dense(copy, N, K, DType::BF16);
      r.w.prepare(Compute{kernel_env().pool, Precision::kFast, nullptr, {}});
      EXPECT_TRUE(r.w.is_repacked());
      check(N, K, r, orig, rng);
    }
  }
  kernel_env().set_threads(0);
}

// Repacking keeps every value (rows read back bit for bit) and reports the panels' bytes.
TEST(MatMulRepackBf16, SameValuesEveryShape) {
  if (!matmul_detail::avx512_enabled()) GTEST_SKIP() << "no AVX-512";
  for_each_panel_weight(31, [](int64_t N, int64_t K, const RefWeight& r, const RefWeight& orig, std::mt19937&) {
    EXPECT_EQ(r.w.weight_bytes(), size_t((N + 63) / 64 * 64 * ((K + 1) / 2) * 4));
    std::vector<float> a(static_cast<size_t>(K)), b(static_cast<size_t>(K));
    for (int64_t n = 0; n < N; ++n) {
      orig.w.dequantize_row(n, a.data());
      r.w.dequantize_row(n, b.data());
      ASSERT_EQ(a, b) << "N=" << N << " K=" << K << " row " << n;
    }
  });
}

// Float32 products on the panels: the GEMM (panel fills widen the pairs) keeps its k-ordered FMA
// chain, so it matches the unprepared weight bit for bit on every SIMD target; the GEMV streams
// panels in another order, so it is checked against the double reference with the f32 bound.
TEST(MatMulRepackBf16, Float32GemmBitIdenticalGemvWithinBound) {
  if (!matmul_detail::avx512_enabled()) GTEST_SKIP() << "no AVX-512";
  PrecisionScope scope(MatMulPrecision::kF32);
  for_each_panel_weight(32, [](int64_t N, int64_t K, const RefWeight& r, const RefWeight& orig, std::mt19937& rng) {
    for (int64_t M : {1, 2, 3, 4, 5, 6}) check_forward(r, M, rng, M % 2 == 0, "f32 gemv on bf16 panels");
    for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
      hwy::SetSupportedTargetsForTest(target);
      for (int64_t M : {7, 13, 97}) {
        std::vector<float> x = random_vec(rng, M * K), bias = random_vec(rng, N);
        std::vector<float> want(size_t(M * N)), got(size_t(M * N));
        orig.w.forward_as(MatMulPrecision::kF32, *kernel_env().pool, x.data(), M, want.data(), bias.data());
        r.w.forward_as(MatMulPrecision::kF32, *kernel_env().pool, x.data(), M, got.data(), bias.data());
        ASSERT_EQ(got, want) << "target " << hwy::TargetName(target) << " N=" << N << " K=" << K << " M=" << M;
      }
    }
    hwy::SetSupportedTargetsForTest(0);
  });
}

// The bf16 GEMV and GEMM on the panels, bound of activations rounded to bf16 (weights are bf16
// already): |Δ| <= 2^-8·Σ|x·w| plus f32 accumulation. emulated: the instructions emulated in
// AVX512F, on any AVX-512 CPU; else the weight's own forward in kBF16 (AVX512-BF16 CPUs).
void check_bf16_panels(bool emulated) {
  PrecisionScope scope(MatMulPrecision::kBF16);
  for_each_panel_weight(33, [&](int64_t N, int64_t K, const RefWeight& r, const RefWeight& orig, std::mt19937& rng) {
    MatMulWeight::Impl loaded, impl;  // the same panels, for the kernels' own entry points
    loaded.N = impl.N = N;
    loaded.K = impl.K = K;
    loaded.w = orig.stored;
    impl.bf16_panels = matmul_detail::repack_bf16(*kernel_env().pool, loaded);
    Forward forward;
    if (emulated)
      forward = [&](const float* x, int64_t m, float* y, const float* bias) {
        if (m <= 6)
          matmul_detail::gemv_panels_bf16_emulated(*kernel_env().pool, *impl.bf16_panels, x, m, y, bias);
        else
          matmul_detail::gemm_bf16_emulated(*kernel_env().pool, impl, x, m, y, bias);
      };
    const double tol = std::ldexp(1.0, -8) + double(K) * std::ldexp(1.0, -24) + 2e-6;
    for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 13, 97})
      check_forward(r, M, rng, M % 2 == 1,
                    std::string(emulated ? "emulated " : "") + "bf16 on panels N=" + std::to_string(N) +
                        " K=" + std::to_string(K),
                    tol, nullptr, forward);
  });
}

TEST(MatMulRepackBf16, Bf16KernelsEmulated) {
  if (!matmul_detail::avx512_enabled()) GTEST_SKIP() << "no AVX-512";
  check_bf16_panels(true);
}

TEST(MatMulRepackBf16, Bf16KernelsNative) {
  if (!matmul_bf16_supported()) GTEST_SKIP() << "CPU has no AVX512_BF16";
  check_bf16_panels(false);
}

// emulated: the same kernel with its bf16 instructions emulated, on any AVX-512 CPU.
void check_bf16_gemv(bool emulated) {
  PrecisionScope scope(MatMulPrecision::kBF16);
  std::mt19937 rng(25);
  for (int threads : {1, 2}) {
    kernel_env().set_threads(threads);
    // Odd K (masked last block), N not a multiple of 4, and one above the parallel cutoff.
    for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{{37, 259}, {70, 64}, {203, 1000}}) {
      RefWeight r = make_dense(rng, N, K, DType::BF16);
      MatMulWeight::Impl impl;
      impl.N = N;
      impl.K = K;
      impl.w = r.stored;
      Forward forward;
      if (emulated)
        forward = [&](const float* x, int64_t m, float* y, const float* bias) {
          matmul_detail::gemv_bf16_dot_emulated(*kernel_env().pool, impl, x, m, y, bias);
        };
      for (int64_t M : {1, 2, 3, 4, 5, 6})
        check_forward(r, M, rng, M % 2 == 0, emulated ? "bf16 gemv (emulated)" : "bf16 gemv",
                      std::ldexp(1.0, -8) + 2e-6, nullptr, forward);
    }
  }
}

TEST(MatMulBf16Gemv, DenseBf16WeightsEveryRowCount) {
  if (!matmul_bf16_supported()) GTEST_SKIP() << "CPU has no AVX512_BF16";
  check_bf16_gemv(false);
}

TEST(MatMulBf16Gemv, EmulatedEveryRowCount) {
  if (!matmul_detail::avx512_enabled()) GTEST_SKIP() << "no AVX-512";
  check_bf16_gemv(true);
}

}  // namespace
}  // namespace vlm
