#include "nn/rope.h"

#include <cmath>

#include "core/error.h"

namespace vlm::nn {

std::vector<float> rope_inv_freq(int dim, double theta) {
  std::vector<float> inv(size_t(dim / 2));
  // Computed as torch does: float32 arange(0, dim, 2) / dim, then theta ** that, reciprocal.
  for (int j = 0; j < dim / 2; ++j) {
    float exponent = float(2 * j) / float(dim);
    inv[size_t(j)] = 1.0f / std::pow(float(theta), exponent);
  }
  return inv;
}

RopeTables rope_tables(const std::vector<int64_t>& positions, const std::vector<float>& inv_freq) {
  const size_t half = inv_freq.size(), hd = 2 * half;
  RopeTables t;
  t.cos.resize(positions.size() * hd);
  t.sin.resize(positions.size() * hd);
  for (size_t r = 0; r < positions.size(); ++r) {
    for (size_t j = 0; j < half; ++j) {
      float angle = float(positions[r]) * inv_freq[j];
      float c = std::cos(angle), s = std::sin(angle);
      t.cos[r * hd + j] = t.cos[r * hd + j + half] = c;
      t.sin[r * hd + j] = t.sin[r * hd + j + half] = s;
    }
  }
  return t;
}

RopeTables mrope_tables(const std::array<std::vector<int64_t>, 3>& positions, const std::vector<float>& inv_freq,
                        const std::vector<int>& mrope_section) {
  const size_t half = inv_freq.size(), hd = 2 * half, n = positions[0].size();
  size_t total = 0;
  for (int s : mrope_section) total += size_t(s);
  if (total != half) fail("mrope_section sums to ", total, " but head_dim/2 is ", half);
  if (positions[1].size() != n || positions[2].size() != n) fail("mrope: position rows differ in length");
  // axis_of[j] for j < half; the second half mirrors the first.
  std::vector<int> axis_of(half);
  size_t j = 0;
  for (size_t k = 0; k < mrope_section.size(); ++k)
    for (int i = 0; i < mrope_section[k]; ++i) axis_of[j++] = int(k % 3);
  RopeTables t;
  t.cos.resize(n * hd);
  t.sin.resize(n * hd);
  for (size_t r = 0; r < n; ++r) {
    for (size_t c = 0; c < half; ++c) {
      float angle = float(positions[size_t(axis_of[c])][r]) * inv_freq[c];
      float cs = std::cos(angle), sn = std::sin(angle);
      t.cos[r * hd + c] = t.cos[r * hd + c + half] = cs;
      t.sin[r * hd + c] = t.sin[r * hd + c + half] = sn;
    }
  }
  return t;
}

}  // namespace vlm::nn
