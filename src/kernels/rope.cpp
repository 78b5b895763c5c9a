// Rotary position embedding (ops.h). Memory-bound and short; the compiler vectorizes the
// inner loop, so it stays plain C++.
#include "kernels/ops.h"

namespace vlm {

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

}  // namespace vlm
