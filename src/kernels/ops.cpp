#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/thread_pool.h"

namespace vlm {

void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out,
              bool one_plus_weight) {
  thread_pool().parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
      float inv = 1.0f / std::sqrt(float(ss / double(dim)) + eps);
      for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * inv * (one_plus_weight ? 1.0f + w[i] : w[i]);
    }
  });
}

void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t dim, float eps, float* out) {
  thread_pool().parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      double mean = 0;
      for (int64_t i = 0; i < dim; ++i) mean += xr[i];
      mean /= double(dim);
      double var = 0;
      for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
      var /= double(dim);
      float inv = float(1.0 / std::sqrt(var + eps));
      float m = float(mean);
      for (int64_t i = 0; i < dim; ++i) o[i] = (xr[i] - m) * inv * w[i] + (b ? b[i] : 0.f);
    }
  });
}

void gelu_erf(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * float(M_SQRT1_2)));
}

void gelu_tanh(float* x, int64_t n) {
  const float c = std::sqrt(2.0f / float(M_PI));
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(c * (v + 0.044715f * v * v * v)));
  }
}

void quick_gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-1.702f * x[i]));
}

void silu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void gelu_tanh_mul(float* gate, const float* up, int64_t n) {
  gelu_tanh(gate, n);
  for (int64_t i = 0; i < n; ++i) gate[i] *= up[i];
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void scale_inplace(float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void softmax_rows(float* x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* p = x + r * cols;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < cols; ++i) mx = std::max(mx, p[i]);
    double sum = 0;
    for (int64_t i = 0; i < cols; ++i) {
      p[i] = std::exp(p[i] - mx);
      sum += p[i];
    }
    float inv = float(1.0 / sum);
    for (int64_t i = 0; i < cols; ++i) p[i] *= inv;
  }
}

void apply_rope(float* x, int64_t rows, int64_t row_stride, int heads, int head_dim, const float* cos,
                const float* sin) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < rows; ++t) {
    const float* c = cos + t * head_dim;
    const float* s = sin + t * head_dim;
    for (int h = 0; h < heads; ++h) {
      float* v = x + t * row_stride + int64_t(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i + half] + a * s[i + half];
      }
    }
  }
}

void attention(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride, int64_t T,
               int64_t S, int q_heads, int kv_heads, int head_dim, float scale, const AttentionMask& mask,
               float* out) {
  constexpr int64_t kTile = 64;
  const int group = q_heads / kv_heads;
  // Visible key range [lo, hi) for query i.
  auto key_range = [&](int64_t i, int64_t& lo, int64_t& hi) {
    if (!mask.segments.empty()) {
      auto it = std::upper_bound(mask.segments.begin(), mask.segments.end(), i);
      hi = std::min<int64_t>(S, *it);
      lo = *(it - 1);
      return;
    }
    lo = 0;
    hi = S;
    if (mask.causal) hi = std::min<int64_t>(S, std::max(mask.q_offset + i + 1, mask.prefix));
  };
  thread_pool().run(T * q_heads, [&](int64_t task) {
    int64_t i = task / q_heads;
    int h = int(task % q_heads);
    int kvh = h / group;
    const float* qi = q + i * q_stride + int64_t(h) * head_dim;
    float* o = out + (i * q_heads + h) * head_dim;
    int64_t lo, hi;
    key_range(i, lo, hi);
    std::vector<float> acc(size_t(head_dim), 0.f);
    float scores[kTile];
    float running_max = -std::numeric_limits<float>::infinity();
    float running_sum = 0.f;
    for (int64_t j0 = lo; j0 < hi; j0 += kTile) {
      int64_t j1 = std::min(hi, j0 + kTile);
      float tile_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = j0; j < j1; ++j) {
        const float* kj = k + j * kv_stride + int64_t(kvh) * head_dim;
        float d = 0.f;
        for (int c = 0; c < head_dim; ++c) d += qi[c] * kj[c];
        scores[j - j0] = d * scale;
        tile_max = std::max(tile_max, scores[j - j0]);
      }
      float new_max = std::max(running_max, tile_max);
      float correction = std::exp(running_max - new_max);
      running_sum *= correction;
      for (int c = 0; c < head_dim; ++c) acc[c] *= correction;
      for (int64_t j = j0; j < j1; ++j) {
        float p = std::exp(scores[j - j0] - new_max);
        running_sum += p;
        const float* vj = v + j * kv_stride + int64_t(kvh) * head_dim;
        for (int c = 0; c < head_dim; ++c) acc[c] += p * vj[c];
      }
      running_max = new_max;
    }
    float inv = running_sum > 0 ? 1.f / running_sum : 0.f;
    for (int c = 0; c < head_dim; ++c) o[c] = acc[c] * inv;
  });
}

}  // namespace vlm
