// Test helpers for MatMulWeight: an independent MLX packer, random weights with their exact
// dequantized values, and a double-precision reference check.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul.h"

namespace vlm::matmul_test {

// Value i occupies bits [i*bits, (i+1)*bits) of a little-endian stream of uint32 words.
inline std::vector<uint32_t> pack_mlx(const std::vector<uint32_t>& q, int bits) {
  std::vector<uint32_t> words(q.size() * size_t(bits) / 32, 0);
  for (size_t i = 0; i < q.size(); ++i)
    for (int b = 0; b < bits; ++b)
      if ((q[i] >> b) & 1u) {
        size_t bit = i * size_t(bits) + size_t(b);
        words[bit / 32] |= 1u << (bit % 32);
      }
  return words;
}

// A float tensor in `dtype` plus the exact values it holds.
struct FloatTensor {
  Tensor t;
  std::vector<double> v;
};
inline FloatTensor make_floats(std::mt19937& rng, Shape shape, DType dtype, float lo, float hi,
                               bool random_sign = false) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> f(size_t(shape_numel(shape)));
  for (auto& x : f) x = random_sign && (rng() & 1) ? -u(rng) : u(rng);
  FloatTensor r;
  r.t = Tensor::from_floats(f, shape).to(dtype);
  for (float x : r.t.to_floats()) r.v.push_back(x);
  return r;
}

struct RefWeight {
  MatMulWeight w;
  std::vector<double> dense;  // [N, K] exact dequantized values
  std::vector<double> mag;    // [N, K] |s·q| + |b| (error scale of the factorised form)
  Tensor stored;              // dense weights: the [N, K] tensor W views (empty when quantized)
};

inline RefWeight make_dense(std::mt19937& rng, int64_t N, int64_t K, DType dtype) {
  FloatTensor w = make_floats(rng, {N, K}, dtype, -1.f, 1.f);
  RefWeight r{MatMulWeight::dense(w.t, "test"), w.v, {}, w.t};
  for (double v : w.v) r.mag.push_back(std::fabs(v));
  return r;
}

inline RefWeight make_quant(std::mt19937& rng, int64_t N, int64_t K, int bits, int group, DType sdtype) {
  std::vector<uint32_t> packed;
  std::vector<std::vector<uint32_t>> q(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    q[size_t(n)].resize(size_t(K));
    for (auto& v : q[size_t(n)]) v = rng() % (1u << bits);
    auto row = pack_mlx(q[size_t(n)], bits);
    packed.insert(packed.end(), row.begin(), row.end());
  }
  Tensor pt = Tensor::empty(DType::U32, {N, K * bits / 32});
  std::copy(packed.begin(), packed.end(), pt.data<uint32_t>());
  const int64_t G = K / group;
  FloatTensor s = make_floats(rng, {N, G}, sdtype, 0.001f, 0.05f, /*random_sign=*/true);
  FloatTensor b = make_floats(rng, {N, G}, sdtype, -0.3f, 0.3f);
  RefWeight r{MatMulWeight::quantized(pt, s.t, b.t, bits, group, "test"), {}, {}, {}};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      double sv = s.v[size_t(n * G + k / group)], bv = b.v[size_t(n * G + k / group)];
      double qv = q[size_t(n)][size_t(k)];
      r.dense.push_back(sv * qv + bv);
      r.mag.push_back(std::fabs(sv * qv) + std::fabs(bv));
    }
  return r;
}

inline std::vector<float> random_vec(std::mt19937& rng, int64_t n) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// Optional extra error allowance for element (m, n) given x: returns a bound added to tol·scale.
using ExtraBound = std::function<double(const std::vector<float>& x, int64_t m, int64_t n)>;
// y = x · Wᵀ (+ bias) by some kernel other than MatMulWeight::forward_as.
using Forward = std::function<void(const float* x, int64_t M, float* y, const float* bias)>;

// The kernel settings the checks below run with (tests change them; kernels take them explicitly).
struct KernelEnv {
  MatMulPrecision precision = MatMulPrecision::kF32;
  std::shared_ptr<ThreadPool> pool = std::make_shared<ThreadPool>(2);
  void set_threads(int n) { pool = std::make_shared<ThreadPool>(n > 0 ? n : 2); }
  Compute compute() const { return Compute{pool, Precision::kExact, nullptr, {}}; }
};
inline KernelEnv& kernel_env() {
  static KernelEnv env;
  return env;
}

inline void check_forward(const RefWeight& r, int64_t M, std::mt19937& rng, bool with_bias, const std::string& what,
                          double tol = 2e-6, const ExtraBound& extra = nullptr, const Forward& forward = nullptr) {
  const int64_t N = r.w.rows(), K = r.w.cols();
  std::vector<float> x = random_vec(rng, M * K), bias = random_vec(rng, N);
  std::vector<float> y(size_t(M * N), NAN);
  if (forward)
    forward(x.data(), M, y.data(), with_bias ? bias.data() : nullptr);
  else
    r.w.forward_as(kernel_env().precision, *kernel_env().pool, x.data(), M, y.data(),
                   with_bias ? bias.data() : nullptr);
  int bad = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double ref = with_bias ? bias[size_t(n)] : 0.0, scale = 1e-3 + std::fabs(ref);
      for (int64_t k = 0; k < K; ++k) {
        ref += double(x[size_t(m * K + k)]) * r.dense[size_t(n * K + k)];
        scale += std::fabs(x[size_t(m * K + k)]) * r.mag[size_t(n * K + k)];
      }
      double got = y[size_t(m * N + n)];
      const double allowed = tol * scale + (extra ? extra(x, m, n) : 0.0);
      if (!(std::fabs(got - ref) <= allowed) && ++bad <= 3)
        ADD_FAILURE() << what << " M=" << M << " m=" << m << " n=" << n << ": got " << got << " want " << ref
                      << " (scale " << scale << ")";
    }
}

// Restores the kernel settings a test changes.
struct PrecisionScope {
  explicit PrecisionScope(MatMulPrecision p) { kernel_env().precision = p; }
  ~PrecisionScope() {
    kernel_env().precision = MatMulPrecision::kF32;
    kernel_env().set_threads(0);
  }
};

// Error bound of kInt8 activations quantized per group of `group` columns to 15 bits (one step
// amax/16256 per group: |error| <= amax/32512 per value) against the weights' magnitudes.
inline ExtraBound int8_bound(const RefWeight& r, int group) {
  return [&r, group](const std::vector<float>& x, int64_t m, int64_t n) {
    const int64_t K = r.w.cols();
    double bound = 0;
    for (int64_t g0 = 0; g0 < K; g0 += group) {
      double amax = 0, mag = 0;
      for (int64_t k = g0; k < g0 + group; ++k) {
        amax = std::max(amax, double(std::fabs(x[size_t(m * K + k)])));
        mag += r.mag[size_t(n * K + k)];
      }
      bound += amax / 32512.0 * mag;
    }
    return bound * 1.001;
  };
}

}  // namespace vlm::matmul_test
