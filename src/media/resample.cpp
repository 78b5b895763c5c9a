// Pillow's Image.resize for RGB uint8 (libImaging/Resample.c and Geometry.c's nearest scaling),
// re-expressed: separable convolution with filter support scaled by the downscale factor,
// coefficients in 22-bit fixed point, a uint8 intermediate after the horizontal pass, then the
// vertical pass; only source rows the vertical pass reads are resampled horizontally.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "core/error.h"
#include "core/thread_pool.h"
#include "media/image.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// The loops below get an AVX2 clone picked at load time by an ifunc resolver. Clang 14 instruments
// that resolver for ThreadSanitizer, and the dynamic loader runs it before TSan is initialized (the
// process dies before main), so ThreadSanitizer builds keep the portable version only.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VLM_NO_TARGET_CLONES
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define VLM_NO_TARGET_CLONES
#endif
#ifdef VLM_NO_TARGET_CLONES
#define VLM_AVX2_CLONES
#else
#define VLM_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#endif

namespace vlm {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double box_filter(double x) {
  return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
}
double bilinear_filter(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}
double hamming_filter(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x *= M_PI;
  // Pillow writes these constants as floats; their float values matter for bit-exactness.
  return std::sin(x) / x * (double(0.54f) + double(0.46f) * std::cos(x));
}
double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}
double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}
double lanczos_filter(double x) {
  return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

struct Filter {
  double (*fn)(double);
  double support;
};

Filter filter_for(Resample r) {
  switch (r) {
    case Resample::Box: return {box_filter, 0.5};
    case Resample::Bilinear: return {bilinear_filter, 1.0};
    case Resample::Hamming: return {hamming_filter, 1.0};
    case Resample::Bicubic: return {bicubic_filter, 2.0};
    case Resample::Lanczos: return {lanczos_filter, 3.0};
    default: fail("resize: unsupported filter");
  }
}

// Per output index: first source index, tap count, and ksize fixed-point weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> k;
};

Coeffs precompute_coeffs(int in_size, float in0, float in1, int out_size, const Filter& f) {
  double scale = double(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = f.support * filterscale;
  Coeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.k.assign(size_t(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    double center = in0 + (xx + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = f.fn((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    int32_t* k = &c.k[size_t(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      k[x] = v < 0 ? int32_t(-0.5 + v * (1 << kPrecisionBits)) : int32_t(0.5 + v * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over blocks of kRows rows: the block is transposed so that the same pixel of
// all kRows rows is contiguous, and each output sample accumulates a window of `win` taps as one
// vector of kRows int32 lanes. Windows are padded to a fixed width with zero weights (exact in
// integers), shifted left where they would run past the row end.
constexpr int kRows = 8;

struct HorizontalPlan {
  int win = 0;
  std::vector<int> start;
  std::vector<int32_t> k;  // out_w * win
};

HorizontalPlan plan_horizontal(const Coeffs& c, int in_w, int out_w) {
  HorizontalPlan p;
  p.win = std::min(c.ksize, in_w);
  p.start.resize(out_w);
  p.k.assign(size_t(out_w) * p.win, 0);
  for (int xx = 0; xx < out_w; ++xx) {
    int s = std::min(c.first[xx], in_w - p.win);
    p.start[xx] = s;
    for (int t = 0; t < c.count[xx]; ++t)
      p.k[size_t(xx) * p.win + (c.first[xx] - s) + t] = c.k[size_t(xx) * c.ksize + t];
  }
  return p;
}

VLM_AVX2_CLONES void horizontal_block(const uint8_t* tr, const HorizontalPlan& p, int out_w, uint8_t* const* dst) {
  const int win = p.win;
  for (int xx = 0; xx < out_w; ++xx) {
    const int32_t* k = &p.k[size_t(xx) * win];
    for (int c = 0; c < 3; ++c) {
      const uint8_t* src = tr + (size_t(p.start[xx]) * 3 + c) * kRows;
      int32_t acc[kRows];
      for (int r = 0; r < kRows; ++r) acc[r] = 1 << (kPrecisionBits - 1);
      for (int t = 0; t < win; ++t, src += 3 * kRows) {
        const int32_t kt = k[t];
        for (int r = 0; r < kRows; ++r) acc[r] += int32_t(src[r]) * kt;
      }
      for (int r = 0; r < kRows; ++r) dst[r][3 * xx + c] = clip8(acc[r]);
    }
  }
}

// tr[i * kRows + r] = rows[r][i] for i < n.
void transpose_rows(const uint8_t* const* rows, size_t n, uint8_t* tr) {
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 8 <= n; i += 8) {
    __m128i r[8];
    for (int k = 0; k < 8; ++k) r[k] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rows[k] + i));
    __m128i a0 = _mm_unpacklo_epi8(r[0], r[1]), a1 = _mm_unpacklo_epi8(r[2], r[3]);
    __m128i a2 = _mm_unpacklo_epi8(r[4], r[5]), a3 = _mm_unpacklo_epi8(r[6], r[7]);
    __m128i b0 = _mm_unpacklo_epi16(a0, a1), b1 = _mm_unpackhi_epi16(a0, a1);
    __m128i b2 = _mm_unpacklo_epi16(a2, a3), b3 = _mm_unpackhi_epi16(a2, a3);
    auto* out = reinterpret_cast<__m128i*>(tr + i * kRows);
    _mm_storeu_si128(out + 0, _mm_unpacklo_epi32(b0, b2));
    _mm_storeu_si128(out + 1, _mm_unpackhi_epi32(b0, b2));
    _mm_storeu_si128(out + 2, _mm_unpacklo_epi32(b1, b3));
    _mm_storeu_si128(out + 3, _mm_unpackhi_epi32(b1, b3));
  }
#endif
  for (; i < n; ++i)
    for (int r = 0; r < kRows; ++r) tr[i * kRows + r] = rows[r][i];
}

// Rows [row0, row0 + out_rows) of `in` resampled to out_w columns.
// Splits [0, n) over `pool`, or runs it on the caller when there is none.
void split_rows(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool)
    pool->parallel_for(n, grain, fn);
  else
    fn(0, n);
}

void horizontal_pass(ThreadPool* pool, const uint8_t* in, int in_w, int row0, int out_rows, const Coeffs& c, int out_w,
                     uint8_t* out) {
  const HorizontalPlan plan = plan_horizontal(c, in_w, out_w);
  const int64_t blocks = (out_rows + kRows - 1) / kRows;
  const size_t row_len = size_t(in_w) * 3;
  split_rows(pool, blocks, 2, [&](int64_t b0, int64_t b1) {
    std::vector<uint8_t> tr(row_len * kRows);
    std::vector<uint8_t> spare(size_t(out_w) * 3);  // sink for the padding rows of the last block
    for (int64_t b = b0; b < b1; ++b) {
      const int r0 = int(b) * kRows, rows = std::min(kRows, out_rows - r0);
      uint8_t* dst[kRows];
      const uint8_t* src[kRows];
      for (int r = 0; r < kRows; ++r) {
        src[r] = in + size_t(row0 + r0 + std::min(r, rows - 1)) * row_len;
        dst[r] = r < rows ? out + size_t(r0 + r) * out_w * 3 : spare.data();
      }
      transpose_rows(src, row_len, tr.data());
      horizontal_block(tr.data(), plan, out_w, dst);
    }
  });
}

VLM_AVX2_CLONES void accumulate_row(int32_t* acc, const uint8_t* src, size_t n, int32_t k) {
  for (size_t i = 0; i < n; ++i) acc[i] += int32_t(src[i]) * k;
}

// `first` indices are relative to `in`'s first row.
void vertical_pass(ThreadPool* pool, const uint8_t* in, int w, const Coeffs& c, int out_h, uint8_t* out) {
  const size_t row_len = size_t(w) * 3;
  split_rows(pool, out_h, 4, [&](int64_t y0, int64_t y1) {
    std::vector<int32_t> acc(row_len);
    for (int64_t yy = y0; yy < y1; ++yy) {
      std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
      const int32_t* k = &c.k[size_t(yy) * c.ksize];
      int32_t* a = acc.data();
      for (int t = 0, n = c.count[yy]; t < n; ++t) {
        accumulate_row(a, in + size_t(c.first[yy] + t) * row_len, row_len, k[t]);
      }
      uint8_t* dst = out + size_t(yy) * row_len;
      for (size_t i = 0; i < row_len; ++i) dst[i] = clip8(a[i]);
    }
  });
}

// Geometry.c's ImagingScaleAffine with a = (in/out, 0, 0; 0, in/out, 0): the source coordinate is
// accumulated in double, starting at half a step, and truncated.
Image resize_nearest(ThreadPool* pool, const Image& img, int width, int height) {
  auto table = [](int in_size, int out_size) {
    double a = double(float(in_size) - 0.0f) / out_size;
    std::vector<int> idx(out_size);
    double o = 0.0 + a * 0.5;
    for (int i = 0; i < out_size; ++i, o += a) idx[i] = std::min(o < 0.0 ? 0 : int(o), in_size - 1);
    return idx;
  };
  std::vector<int> xs = table(img.width, width), ys = table(img.height, height);
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(size_t(width) * height * 3);
  split_rows(pool, height, 16, [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) {
      uint8_t* dst = &out.rgb[size_t(y) * width * 3];
      for (int x = 0; x < width; ++x) std::memcpy(dst + 3 * x, img.pixel(xs[x], ys[y]), 3);
    }
  });
  return out;
}

}  // namespace

Image resize(const Image& img, int width, int height, Resample filter, ThreadPool* pool) {
  if (width <= 0 || height <= 0) fail("resize: target size must be positive, got ", width, "x", height);
  if (img.width <= 0 || img.height <= 0 || img.rgb.size() != size_t(img.width) * img.height * 3)
    fail("resize: invalid source image ", img.width, "x", img.height);
  if (width == img.width && height == img.height) return img;  // Pillow returns a copy
  if (filter == Resample::Nearest) return resize_nearest(pool, img, width, height);
  Filter f = filter_for(filter);
  Coeffs ch = precompute_coeffs(img.width, 0.0f, float(img.width), width, f);
  Coeffs cv = precompute_coeffs(img.height, 0.0f, float(img.height), height, f);
  // Pillow's need_horizontal/need_vertical with the full box reduce to "size differs".
  bool need_h = width != img.width, need_v = height != img.height;
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(size_t(width) * height * 3);
  if (need_h && need_v) {
    int row_first = cv.first[0];
    int row_last = cv.first[height - 1] + cv.count[height - 1];
    for (int& v : cv.first) v -= row_first;
    std::vector<uint8_t> tmp(size_t(width) * (row_last - row_first) * 3);
    horizontal_pass(pool, img.rgb.data(), img.width, row_first, row_last - row_first, ch, width, tmp.data());
    vertical_pass(pool, tmp.data(), width, cv, height, out.rgb.data());
  } else if (need_h) {
    horizontal_pass(pool, img.rgb.data(), img.width, 0, height, ch, width, out.rgb.data());
  } else {
    vertical_pass(pool, img.rgb.data(), width, cv, height, out.rgb.data());
  }
  return out;
}

}  // namespace vlm
