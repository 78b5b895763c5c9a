// ops.h kernels against double-precision scalar references written here.
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "hwy/targets.h"
#include "kernels/attention_internal.h"
#include "kernels/matmul_x86.h"

namespace vlm {
namespace {

std::vector<float> rand_vec(std::mt19937& rng, size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// |got - want| <= rel·|want| + abs_tol, reporting the first few failures.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double rel, double abs_tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= rel * std::fabs(want[i]) + abs_tol) && ++bad <= 3)
      ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << " want " << want[i];
}

// The compute environment the kernels run in (tests switch its thread count).
Compute g_env = Compute::make(2);

const std::vector<int64_t> kSizes = {1, 3, 7, 15, 16, 17, 33, 100, 1000, 1536};

TEST(Ops, RmsNorm) {
  std::mt19937 rng(1);
  for (int64_t dim : kSizes)
    for (bool one_plus : {false, true}) {
      const int64_t rows = 5;
      auto x = rand_vec(rng, size_t(rows * dim), -3.f, 3.f), w = rand_vec(rng, size_t(dim));
      std::vector<float> out(x.size());
      rms_norm(g_env, x.data(), w.data(), rows, dim, 1e-6f, out.data(), one_plus);
      std::vector<double> ref;
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < dim; ++i) ss += double(x[size_t(r * dim + i)]) * x[size_t(r * dim + i)];
        double inv = 1.0 / std::sqrt(ss / double(dim) + 1e-6);
        for (int64_t i = 0; i < dim; ++i)
          ref.push_back(x[size_t(r * dim + i)] * inv * (one_plus ? 1.0 + w[size_t(i)] : w[size_t(i)]));
      }
      expect_close(out, ref, 1e-5, 1e-6, "rms_norm dim=" + std::to_string(dim));
    }
}

TEST(Ops, LayerNorm) {
  std::mt19937 rng(2);
  for (int64_t dim : kSizes)
    for (bool with_bias : {false, true}) {
      const int64_t rows = 4;
      auto x = rand_vec(rng, size_t(rows * dim), 2.f, 5.f), w = rand_vec(rng, size_t(dim)),
           b = rand_vec(rng, size_t(dim));
      std::vector<float> out(x.size());
      layer_norm(g_env, x.data(), w.data(), with_bias ? b.data() : nullptr, rows, dim, 1e-5f, out.data());
      std::vector<double> ref;
      for (int64_t r = 0; r < rows; ++r) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < dim; ++i) mean += x[size_t(r * dim + i)];
        mean /= double(dim);
        for (int64_t i = 0; i < dim; ++i) var += std::pow(x[size_t(r * dim + i)] - mean, 2);
        var /= double(dim);
        for (int64_t i = 0; i < dim; ++i)
          ref.push_back((x[size_t(r * dim + i)] - mean) / std::sqrt(var + 1e-5) * w[size_t(i)] +
                        (with_bias ? b[size_t(i)] : 0.0));
      }
      expect_close(out, ref, 1e-5, 2e-6, "layer_norm dim=" + std::to_string(dim));
    }
}

void check_activation(const std::string& name, const std::function<void(const Compute&, float*, int64_t)>& f,
                      const std::function<double(double)>& ref_fn) {
  std::mt19937 rng(3);
  for (int64_t n : kSizes) {
    auto x = rand_vec(rng, size_t(n), -8.f, 8.f);
    if (n >= 7) {  // extremes: far tails must not produce NaN/inf
      x[0] = -120.f;
      x[1] = 120.f;
      x[2] = 0.f;
      x[3] = -30.f;
    }
    std::vector<double> ref;
    for (float v : x) ref.push_back(ref_fn(v));
    f(g_env, x.data(), n);
    expect_close(x, ref, 1e-5, 1e-30, name + " n=" + std::to_string(n));
  }
}

double sigmoid(double a) {
  return 1.0 / (1.0 + std::exp(-a));
}

TEST(Ops, Activations) {
  check_activation("silu", silu, [](double x) { return x * sigmoid(x); });
  check_activation("quick_gelu", quick_gelu, [](double x) { return x * sigmoid(1.702 * x); });
  check_activation("gelu_erf", gelu_erf, [](double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); });
  // 0.5·(1 + tanh(u)) = sigmoid(2u) exactly; the sigmoid form avoids cancellation in the reference.
  check_activation("gelu_tanh", gelu_tanh,
                   [](double x) { return x * sigmoid(2 * std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)); });
}

TEST(Ops, GatedAndElementwise) {
  std::mt19937 rng(4);
  for (int64_t n : kSizes) {
    auto g = rand_vec(rng, size_t(n), -6.f, 6.f), up = rand_vec(rng, size_t(n));
    std::vector<double> ref_silu, ref_gelu, ref_add, ref_scale;
    for (size_t i = 0; i < g.size(); ++i) {
      double x = g[i];
      ref_silu.push_back(x * sigmoid(x) * up[i]);
      ref_gelu.push_back(x * sigmoid(2 * std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)) * up[i]);
      ref_add.push_back(double(g[i]) + up[i]);
      ref_scale.push_back(double(g[i]) * 0.37f);
    }
    auto a = g, b = g, c = g, s = g;
    silu_mul(g_env, a.data(), up.data(), n);
    gelu_tanh_mul(g_env, b.data(), up.data(), n);
    add_inplace(c.data(), up.data(), n);
    scale_inplace(s.data(), 0.37f, n);
    expect_close(a, ref_silu, 1e-5, 1e-30, "silu_mul");
    expect_close(b, ref_gelu, 1e-5, 1e-30, "gelu_tanh_mul");
    expect_close(c, ref_add, 1e-7, 0, "add_inplace");
    expect_close(s, ref_scale, 1e-7, 0, "scale_inplace");
  }
}

TEST(Ops, Softmax) {
  std::mt19937 rng(5);
  for (int64_t cols : kSizes) {
    const int64_t rows = 3;
    auto x = rand_vec(rng, size_t(rows * cols), -20.f, 20.f);
    std::vector<double> ref;
    for (int64_t r = 0; r < rows; ++r) {
      double mx = -1e300, sum = 0;
      for (int64_t i = 0; i < cols; ++i) mx = std::max(mx, double(x[size_t(r * cols + i)]));
      for (int64_t i = 0; i < cols; ++i) sum += std::exp(x[size_t(r * cols + i)] - mx);
      for (int64_t i = 0; i < cols; ++i) ref.push_back(std::exp(x[size_t(r * cols + i)] - mx) / sum);
    }
    softmax_rows(g_env, x.data(), rows, cols);
    expect_close(x, ref, 1e-5, 1e-30, "softmax cols=" + std::to_string(cols));
  }
}

TEST(Ops, Rope) {
  std::mt19937 rng(6);
  const int64_t rows = 5, heads = 3, hd = 10, stride = heads * hd + 4;
  auto x = rand_vec(rng, size_t(rows * stride)), cs = rand_vec(rng, size_t(rows * hd)),
       sn = rand_vec(rng, size_t(rows * hd));
  std::vector<double> ref(x.begin(), x.end());
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < hd; ++i) {
        size_t at = size_t(t * stride + h * hd + i);
        double rot = i < hd / 2 ? -double(x[at + hd / 2]) : double(x[at - hd / 2]);
        ref[at] = x[at] * double(cs[size_t(t * hd + i)]) + rot * sn[size_t(t * hd + i)];
      }
  apply_rope(x.data(), rows, stride, int(heads), int(hd), cs.data(), sn.data());
  expect_close(x, ref, 1e-6, 1e-6, "rope");
}

// The vectorized RoPE rounds exactly like the plain float loop (no FMA contraction), for head
// widths with and without vector tails.
TEST(Ops, RopeBitExact) {
  std::mt19937 rng(11);
  for (int hd : {2, 10, 32, 64, 80, 128, 130}) {
    const int64_t rows = 7, heads = 3, stride = heads * hd + 5;
    auto x = rand_vec(rng, size_t(rows * stride), -4.f, 4.f), cs = rand_vec(rng, size_t(rows * hd)),
         sn = rand_vec(rng, size_t(rows * hd));
    std::vector<float> want = x;
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int i = 0; i < hd / 2; ++i) {
          float* v = want.data() + t * stride + h * hd;
          const float* c = cs.data() + t * hd;
          const float* s = sn.data() + t * hd;
          volatile float ac = v[i] * c[i], bs = v[i + hd / 2] * s[i], bc = v[i + hd / 2] * c[i + hd / 2],
                         as = v[i] * s[i + hd / 2];  // volatile: no contraction into FMA here either
          v[i] = ac - bs;
          v[i + hd / 2] = bc + as;
        }
    apply_rope(x.data(), rows, stride, int(heads), hd, cs.data(), sn.data());
    for (size_t n = 0; n < x.size(); ++n) ASSERT_EQ(x[n], want[n]) << "hd=" << hd << " at " << n;
  }
}

// Double-precision attention with an explicit visibility predicate. When `bf16_bound` is given it
// receives, per output element, the worst-case error of the fast (bf16) kernel: with unit roundoff
// u = 2^-8 per bf16 operand, each score s_j = scale·Σ q·k is off by at most
// δ = 2.02u·scale·Σ|q·k| (two rounded operands, f32 accumulation negligible), so every softmax
// weight is off by a relative 2·max δ at first order; rounding p and v adds 2.02u. Hence
// |Δout_c| <= (2.2·max_j δ_j + 2.2u)·Σ_j p_j·|v_jc| (10% for second-order terms).
std::vector<double> ref_attention(const std::vector<float>& q, int64_t qs, const std::vector<float>& k,
                                  const std::vector<float>& v, int64_t kvs, int64_t T, int64_t S, int qh, int kvh,
                                  int hd, double scale, const std::function<bool(int64_t, int64_t)>& visible,
                                  std::vector<double>* bf16_bound = nullptr) {
  std::vector<double> out(size_t(T * qh * hd), 0.0);
  if (bf16_bound) bf16_bound->assign(out.size(), 0.0);
  const double u = std::ldexp(1.0, -8);
  for (int64_t i = 0; i < T; ++i)
    for (int h = 0; h < qh; ++h) {
      const int64_t kh = h / (qh / kvh);
      std::vector<double> s;
      std::vector<int64_t> idx;
      double delta = 0;  // max score error of the bf16 kernel
      for (int64_t j = 0; j < S; ++j) {
        if (!visible(i, j)) continue;
        double dot = 0, mag = 0;
        for (int c = 0; c < hd; ++c) {
          const double prod = double(q[size_t(i * qs + h * hd + c)]) * k[size_t(j * kvs + kh * hd + c)];
          dot += prod;
          mag += std::fabs(prod);
        }
        s.push_back(dot * scale);
        idx.push_back(j);
        delta = std::max(delta, 2.02 * u * scale * mag);
      }
      if (s.empty()) continue;
      double mx = *std::max_element(s.begin(), s.end()), sum = 0;
      for (auto& e : s) sum += (e = std::exp(e - mx));
      for (size_t n = 0; n < s.size(); ++n)
        for (int c = 0; c < hd; ++c) {
          const double pv = s[n] / sum * v[size_t(idx[n] * kvs + kh * hd + c)];
          out[size_t((i * qh + h) * hd + c)] += pv;
          if (bf16_bound) (*bf16_bound)[size_t((i * qh + h) * hd + c)] += (2.2 * delta + 2.2 * u) * std::fabs(pv);
        }
    }
  return out;
}

AttentionMask dec_at(int64_t q_offset) {
  AttentionMask m;
  m.q_offset = q_offset;
  return m;
}

struct AttnCase {
  const char* name;
  int64_t T, S;
  int qh, kvh, hd;
  AttentionMask mask;
  std::function<bool(int64_t, int64_t)> visible;
};

TEST(Ops, AttentionAllMasks) {
  std::mt19937 rng(7);
  std::vector<AttnCase> cases;
  cases.push_back({"causal", 70, 70, 4, 4, 16, {}, [](int64_t i, int64_t j) { return j <= i; }});
  AttentionMask dec;
  dec.q_offset = 150;
  cases.push_back({"decode gqa", 1, 151, 12, 2, 128, dec, [](int64_t, int64_t j) { return j <= 150; }});
  AttentionMask chunk;
  chunk.q_offset = 20;
  cases.push_back({"chunked prefill gqa", 9, 29, 6, 3, 72, chunk, [](int64_t i, int64_t j) { return j <= 20 + i; }});
  AttentionMask bidir;
  bidir.causal = false;
  cases.push_back({"bidirectional", 33, 200, 2, 1, 80, bidir, [](int64_t, int64_t) { return true; }});
  AttentionMask prefix;
  prefix.prefix = 40;
  cases.push_back({"prefix-lm", 60, 60, 3, 1, 33, prefix, [](int64_t i, int64_t j) { return j < 40 || j <= i; }});
  AttentionMask seg;
  seg.causal = false;
  seg.segments = {0, 5, 69, 100};
  cases.push_back({"segments", 100, 100, 2, 2, 20, seg, [](int64_t i, int64_t j) {
                     auto s = [](int64_t t) { return t < 5 ? 0 : t < 69 ? 1 : 2; };
                     return s(i) == s(j);
                   }});
  // Vision tower: one segment per image, several key tiles per segment, head_dim 80.
  AttentionMask vision;
  vision.causal = false;
  vision.segments = {0, 130, 257};
  cases.push_back(
      {"vision segments", 257, 257, 3, 3, 80, vision, [](int64_t i, int64_t j) { return (i < 130) == (j < 130); }});
  AttentionMask window;
  window.window = 37;
  window.q_offset = 11;
  cases.push_back({"sliding window gqa", 150, 161, 4, 2, 48, window,
                   [](int64_t i, int64_t j) { return j <= 11 + i && j > 11 + i - 37; }});
  // Gemma 3 prefill of a sliding layer: each image block (one longer than the window) is also seen
  // whole by its own rows; text stays causal and windowed.
  AttentionMask images;
  images.window = 20;
  images.q_offset = 10;
  images.blocks = {{15, 24}, {30, 90}};
  cases.push_back({"sliding window image blocks", 100, 110, 4, 2, 32, images, [](int64_t i, int64_t j) {
                     const int64_t p = 10 + i;
                     for (auto [a, b] : {std::pair<int64_t, int64_t>{15, 24}, {30, 90}})
                       if (a <= p && p < b && a <= j && j < b) return true;
                     return j <= p && j > p - 20;
                   }});
  AttentionMask window_dec;
  window_dec.window = 100;
  window_dec.q_offset = 299;
  cases.push_back({"sliding window decode", 1, 300, 8, 1, 64, window_dec, [](int64_t, int64_t j) { return j > 199; }});
  AttentionMask long_dec;
  long_dec.q_offset = 2999;
  cases.push_back(
      {"decode long odd head", 2, 3001, 6, 3, 45, long_dec, [](int64_t i, int64_t j) { return j <= 2999 + i; }});
  // One kv head, long context: the keys are split across tasks and the partial softmaxes merged.
  AttentionMask mqa_dec;
  mqa_dec.q_offset = 4999;
  cases.push_back({"decode mqa split keys", 1, 5000, 8, 1, 64, mqa_dec, [](int64_t, int64_t j) { return j <= 4999; }});
  AttentionMask mqa_window;
  mqa_window.q_offset = 4998;
  mqa_window.window = 3000;
  cases.push_back({"decode mqa split keys window", 2, 5000, 4, 1, 32, mqa_window,
                   [](int64_t i, int64_t j) { return j <= 4998 + i && j > 1998 + i; }});
  // Gemma head_dim 256 (P·V in two 8-zmm column chunks) and 200 (two chunks with a masked tail).
  AttentionMask gemma;
  gemma.q_offset = 20;
  cases.push_back({"head_dim 256", 20, 40, 2, 1, 256, gemma, [](int64_t i, int64_t j) { return j <= 20 + i; }});
  cases.push_back({"head_dim 256 decode", 1, 40, 2, 1, 256, dec_at(39), [](int64_t, int64_t j) { return j <= 39; }});
  cases.push_back({"head_dim 200", 17, 17, 1, 1, 200, AttentionMask{}, [](int64_t i, int64_t j) { return j <= i; }});
  AttentionMask prefill_odd;
  cases.push_back({"prefill odd head_dim", 77, 77, 4, 1, 31, prefill_odd, [](int64_t i, int64_t j) { return j <= i; }});
  for (const auto& c : cases) {
    const int64_t qs = c.qh * c.hd + 3, kvs = c.kvh * c.hd + 5;  // padded strides
    auto q = rand_vec(rng, size_t(c.T * qs), -2.f, 2.f), k = rand_vec(rng, size_t(c.S * kvs), -2.f, 2.f),
         v = rand_vec(rng, size_t(c.S * kvs));
    const float scale = 1.f / std::sqrt(float(c.hd));
    std::vector<double> bound;
    auto ref = ref_attention(q, qs, k, v, kvs, c.T, c.S, c.qh, c.kvh, c.hd, scale, c.visible, &bound);
    for (int threads : {1, 2})
      for (int variant : {0, 1, 2}) {  // exact, fast, fast with the bf16 path emulated (any AVX-512 CPU)
        const Precision precision = variant == 0 ? Precision::kExact : Precision::kFast;
        if (variant == 2 && !matmul_detail::avx512_enabled()) continue;
        g_env = Compute::make(threads, precision);
        std::vector<float> out(size_t(c.T * c.qh * c.hd), NAN);
        if (variant == 2)
          ASSERT_TRUE(ops_detail::attention_avx512_emulated_bf16(g_env.threads(), true, q.data(), qs, k.data(),
                                                                 v.data(), kvs, c.T, c.S, c.qh, c.kvh, c.hd, scale,
                                                                 c.mask, out.data()));
        else
          attention(g_env, q.data(), qs, k.data(), v.data(), kvs, c.T, c.S, c.qh, c.kvh, c.hd, scale, c.mask,
                    out.data());
        const std::string what = std::string(c.name) + " threads=" + std::to_string(threads) + " " +
                                 precision_name(precision) + (variant == 2 ? " (emulated bf16)" : "");
        if (precision == Precision::kExact) {
          expect_close(out, ref, 1e-5, 2e-6, what);
          continue;
        }
        int bad = 0;
        for (size_t n = 0; n < out.size(); ++n)
          if (!(std::fabs(out[n] - ref[n]) <= bound[n] + 2e-6) && ++bad <= 3)
            ADD_FAILURE() << what << " [" << n << "]: got " << out[n] << " want " << ref[n] << " bound " << bound[n];
      }
  }
  g_env = Compute::make(2);
}

// Re-runs the vectorized kernels on every compiled and supported SIMD target.
TEST(Ops, EverySimdTarget) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    check_activation("gelu_erf", gelu_erf, [](double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); });
    check_activation("silu", silu, [](double x) { return x * sigmoid(x); });
    std::mt19937 rng(8);
    const int64_t T = 21, S = 21, hd = 19;
    auto q = rand_vec(rng, size_t(T * 2 * hd)), k = rand_vec(rng, size_t(S * hd)), v = rand_vec(rng, size_t(S * hd));
    auto ref =
        ref_attention(q, 2 * hd, k, v, hd, T, S, 2, 1, int(hd), 0.3, [](int64_t i, int64_t j) { return j <= i; });
    std::vector<float> out(size_t(T * 2 * hd));
    attention(g_env, q.data(), 2 * hd, k.data(), v.data(), hd, T, S, 2, 1, int(hd), 0.3f, AttentionMask{}, out.data());
    expect_close(out, ref, 1e-5, 2e-6, "attention");
    auto x = rand_vec(rng, 3 * 37), w = rand_vec(rng, 37);
    std::vector<float> o(x.size());
    rms_norm(g_env, x.data(), w.data(), 3, 37, 1e-6f, o.data());
    std::vector<double> rref;
    for (int r = 0; r < 3; ++r) {
      double ss = 0;
      for (int i = 0; i < 37; ++i) ss += double(x[size_t(r * 37 + i)]) * x[size_t(r * 37 + i)];
      for (int i = 0; i < 37; ++i) rref.push_back(x[size_t(r * 37 + i)] / std::sqrt(ss / 37 + 1e-6) * w[size_t(i)]);
    }
    expect_close(o, rref, 1e-5, 1e-6, "rms_norm");
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST(Ops, AttentionRejectsBadHeads) {
  float buf[16] = {};
  EXPECT_THROW(attention(g_env, buf, 4, buf, buf, 4, 1, 1, 3, 2, 2, 1.f, AttentionMask{}, buf), Error);
}

}  // namespace
}  // namespace vlm
