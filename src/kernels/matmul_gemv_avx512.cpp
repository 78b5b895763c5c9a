// AVX-512 GEMV (decode: 1-6 activation rows) with float32-exact products, used instead of the
// portable Highway kernels (matmul_gemv.cpp) when the CPU has AVX-512. What makes it faster:
// - 2/4-bit values become floats with one vpermps per 16 values: the shifted packed word is the
//   permute index (only its low 4 bits count) into a 16-entry table {0..15} (or {0,1,2,3}×4),
//   so neither a mask nor an int->float convert is needed;
// - bf16 pairs become two float vectors with one shift and one and (even / odd halves);
// - activations are permuted once per call to match those lane orders and zero-padded to whole
//   blocks, so the inner loops have no scalar tails; 4 weight rows share each activation load.
// Quantized rows use x·(s·q + b) = Σ_g s_g·(x_g·q_g) + Σ_g b_g·Σx_g.
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul_internal.h"
#include "kernels/matmul_x86.h"

namespace vlm::matmul_detail {

#ifdef VLM_X86_KERNELS
namespace {

enum class Fmt { kF32, kBF16, kF16, kQ2, kQ4, kQ8 };

constexpr int kRows = 4;  // weight rows per pass
// Rows are short (0.7-4 KB) and read R at a time, too short for the hardware prefetcher to ramp
// up, so each block also prefetches the same position R rows down: the next pass's data.
VLM_AVX512 inline void prefetch(const void* p, int64_t offset, int64_t ahead) {
  _mm_prefetch(static_cast<const char*>(p) + offset + ahead, _MM_HINT_T0);
}

struct Ctx {
  const MatMulWeight::Impl* p;
  Fmt fmt;
  int64_t kp;           // padded row length of xp
  int64_t nblk;         // blocks per row (the last may be partial)
  int64_t wpg;          // packed words per group (kQ2/kQ4)
  int64_t groups;       // groups per row (quantized)
  const int32_t* soff;  // [nblk] first group of each block (kQ2/kQ4), see block_groups
  int32_t lane_group[16];
  const float* xp;  // [M, kp] activations in the format's lane order, zero padded
  const float* xs;  // [M, groups] per-group sums of x (quantized)
};

// Weight vectors of block b of a dense row: two for bf16 (even and odd elements), else one.
template <Fmt F>
VLM_AVX512 inline void dense_block(const void* row, int64_t b, int64_t K, bool tail, __m512* w) {
  if constexpr (F == Fmt::kBF16) {
    const uint16_t* h = static_cast<const uint16_t*>(row) + b * 32;
    const int64_t left = K - b * 32;
    const __m512i v = tail ? _mm512_maskz_loadu_epi16(left >= 32 ? ~0u : (1u << left) - 1, h) : _mm512_loadu_si512(h);
    w[0] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    w[1] = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int(0xFFFF0000u))));
  } else if constexpr (F == Fmt::kF16) {
    const uint16_t* h = static_cast<const uint16_t*>(row) + b * 16;
    w[0] = _mm512_cvtph_ps(tail ? _mm256_maskz_loadu_epi16(tail16(K - b * 16), h)
                                : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
  } else {
    const float* f = static_cast<const float*>(row) + b * 16;
    w[0] = tail ? _mm512_maskz_loadu_ps(tail16(K - b * 16), f) : _mm512_loadu_ps(f);
  }
}

template <Fmt F, int MB, int R>
VLM_AVX512 void dense_rows(const Ctx& c, int64_t n, float* y, int64_t ldy, const float* bias) {
  constexpr int V = F == Fmt::kBF16 ? 2 : 1;  // weight vectors per block
  const int64_t K = c.p->K;
  const int64_t esize = F == Fmt::kF32 ? 4 : 2;
  const char* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = static_cast<const char*>(c.p->w.raw()) + (n + r) * K * esize;
  __m512 acc[R][MB];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) acc[r][m] = _mm512_setzero_ps();
  const int64_t full = K / (16 * V);
  auto step = [&](int64_t b, bool tail) VLM_AVX512 __attribute__((always_inline)) {
    __m512 w[R][V];
    for (int r = 0; r < R; ++r) {
      prefetch(rows[r], b * 64, R * K * esize);
      dense_block<F>(rows[r], b, K, tail, w[r]);
    }
    for (int v = 0; v < V; ++v)
      for (int m = 0; m < MB; ++m) {
        const __m512 xv = _mm512_loadu_ps(c.xp + m * c.kp + (b * V + v) * 16);
        for (int r = 0; r < R; ++r) acc[r][m] = _mm512_fmadd_ps(w[r][v], xv, acc[r][m]);
      }
  };
  for (int64_t b = 0; b < full; ++b) step(b, false);
  if (full < c.nblk) step(full, true);
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) y[m * ldy + n + r] = _mm512_reduce_add_ps(acc[r][m]) + (bias ? bias[n + r] : 0.f);
}

// Per-row f32 scales (see padded_groups); the lane accumulators start at the bias term
// Σ_g b_g·Σx_g.
template <int MB, int R>
VLM_AVX512 inline void row_terms(const Ctx& c, int64_t n, float* sbuf, __m512 (&tot)[R][MB]) {
  const MatMulWeight::Impl& p = *c.p;
  for (int r = 0; r < R; ++r) {
    scales_to_f32(p.scales.dtype(), p.scales.raw(), (n + r) * c.groups, c.groups, nullptr,
                  sbuf + r * padded_groups(c.groups));
    for (int m = 0; m < MB; ++m)
      tot[r][m] = dot_lanes(p.biases.dtype(), p.biases.raw(), (n + r) * c.groups, c.xs + m * c.groups, c.groups,
                            _mm512_setzero_ps());
  }
}

// 2- and 4-bit rows: blocks of 16 packed words (one per lane), value j of every word at once.
template <int BITS, int MB, int R>
VLM_AVX512 void lut_rows(const Ctx& c, int64_t n, float* y, int64_t ldy, const float* bias, float* sbuf) {
  constexpr int E = 32 / BITS;
  const int64_t wpr = c.p->w.dim(1), full = wpr / 16;
  const __m512 table = BITS == 4 ? _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
                                 : _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  // Lane l of block b holds group b·16/wpg + l/wpg (groups are whole words, blocks align).
  const __m512i gidx = _mm512_loadu_si512(c.lane_group);
  __m512 tot[R][MB];
  row_terms<MB, R>(c, n, sbuf, tot);
  const uint32_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = c.p->w.data<uint32_t>() + (n + r) * wpr;
  for (int64_t b = 0; b < c.nblk; ++b) {
    const __mmask16 wm = b < full ? __mmask16(0xFFFF) : tail16(wpr - b * 16);
    const int64_t soff = c.soff[b];
    __m512i w[R];
    __m512 tmp[R][MB];
    for (int r = 0; r < R; ++r) {
      prefetch(rows[r], b * 64, R * wpr * 4);
      w[r] = _mm512_maskz_loadu_epi32(wm, rows[r] + b * 16);
      for (int m = 0; m < MB; ++m) tmp[r][m] = _mm512_setzero_ps();
    }
    const float* xb = c.xp + b * 16 * E;
    for (int j = 0; j < E; ++j) {
      __m512 xv[MB];
      for (int m = 0; m < MB; ++m) xv[m] = _mm512_loadu_ps(xb + m * c.kp + j * 16);
      for (int r = 0; r < R; ++r) {
        const __m512 q = _mm512_permutexvar_ps(j == 0 ? w[r] : _mm512_srli_epi32(w[r], j * BITS), table);
        for (int m = 0; m < MB; ++m) tmp[r][m] = _mm512_fmadd_ps(q, xv[m], tmp[r][m]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m512 sv = _mm512_permutexvar_ps(gidx, _mm512_loadu_ps(sbuf + r * padded_groups(c.groups) + soff));
      for (int m = 0; m < MB; ++m) tot[r][m] = _mm512_fmadd_ps(tmp[r][m], sv, tot[r][m]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) y[m * ldy + n + r] = _mm512_reduce_add_ps(tot[r][m]) + (bias ? bias[n + r] : 0.f);
}

// 8-bit rows: 16 bytes zero-extend straight to 16 lanes, activations in natural order.
template <int MB, int R>
VLM_AVX512 void q8_rows(const Ctx& c, int64_t n, float* y, int64_t ldy, const float* bias, float* sbuf) {
  const int64_t G = c.p->group, K = c.p->K;
  __m512 tot[R][MB];
  row_terms<MB, R>(c, n, sbuf, tot);
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const uint8_t*>(c.p->w.data<uint32_t>()) + (n + r) * K;
  for (int64_t g = 0; g < c.groups; ++g) {
    __m512 tmp[R][MB];
    for (int r = 0; r < R; ++r)
      for (int m = 0; m < MB; ++m) tmp[r][m] = _mm512_setzero_ps();
    for (int64_t k = g * G; k < (g + 1) * G; k += 16) {
      __m512 xv[MB];
      for (int m = 0; m < MB; ++m) xv[m] = _mm512_loadu_ps(c.xp + m * c.kp + k);
      for (int r = 0; r < R; ++r) {
        if ((k & 63) == 0) prefetch(rows[r], k, R * K);
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + k));
        const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
        for (int m = 0; m < MB; ++m) tmp[r][m] = _mm512_fmadd_ps(q, xv[m], tmp[r][m]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m512 sv = _mm512_set1_ps(sbuf[r * padded_groups(c.groups) + g]);
      for (int m = 0; m < MB; ++m) tot[r][m] = _mm512_fmadd_ps(tmp[r][m], sv, tot[r][m]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) y[m * ldy + n + r] = _mm512_reduce_add_ps(tot[r][m]) + (bias ? bias[n + r] : 0.f);
}

// Rows [n0, n1) for MB activation rows (x, xs and y already offset to the first of them).
template <int MB, int R>
VLM_AVX512 void run_rows(const Ctx& c, int64_t n0, int64_t n1, float* y, int64_t ldy, const float* bias) {
  thread_local std::vector<float> sbuf;
  if (c.groups) sbuf.resize(size_t(R * padded_groups(c.groups)));
  auto rows = [&](auto rtag, int64_t n) VLM_AVX512 {
    constexpr int RR = decltype(rtag)::value;
    switch (c.fmt) {
      case Fmt::kF32: return dense_rows<Fmt::kF32, MB, RR>(c, n, y, ldy, bias);
      case Fmt::kBF16: return dense_rows<Fmt::kBF16, MB, RR>(c, n, y, ldy, bias);
      case Fmt::kF16: return dense_rows<Fmt::kF16, MB, RR>(c, n, y, ldy, bias);
      case Fmt::kQ2: return lut_rows<2, MB, RR>(c, n, y, ldy, bias, sbuf.data());
      case Fmt::kQ4: return lut_rows<4, MB, RR>(c, n, y, ldy, bias, sbuf.data());
      case Fmt::kQ8: return q8_rows<MB, RR>(c, n, y, ldy, bias, sbuf.data());
    }
  };
  int64_t n = n0;
  for (; n + R <= n1; n += R) rows(std::integral_constant<int, R>(), n);
  for (; n < n1; ++n) rows(std::integral_constant<int, 1>(), n);
}

// Lays out x[M, K] for the format (see Ctx::xp) and computes per-group sums.
VLM_AVX512 void prepare(Ctx& c, const float* x, int64_t M, std::vector<float>& xp, std::vector<float>& xs) {
  const MatMulWeight::Impl& p = *c.p;
  const int64_t K = p.K;
  xp.assign(size_t(M * c.kp), 0.f);
  for (int64_t m = 0; m < M; ++m) {
    const float* xm = x + m * K;
    float* out = xp.data() + m * c.kp;
    if (c.fmt == Fmt::kBF16) {
      // Block of 32: evens then odds, matching the shift / and split of bf16 pairs.
      for (int64_t k = 0; k < K; ++k) out[(k / 32) * 32 + (k % 2) * 16 + (k % 32) / 2] = xm[k];
    } else if (c.fmt == Fmt::kQ2 || c.fmt == Fmt::kQ4) {
      // Block of 16 words × E values: value j of word l goes to j·16 + l.
      const int64_t E = 32 / p.bits, B = 16 * E;
      for (int64_t k0 = 0; k0 < K; k0 += B)
        for (int64_t l = 0; l < 16; ++l)
          for (int64_t j = 0; j < E && k0 + l * E + j < K; ++j) out[k0 + j * 16 + l] = xm[k0 + l * E + j];
    } else {
      std::copy(xm, xm + K, out);
    }
  }
  if (!p.quantized) return;
  xs.resize(size_t(M * c.groups));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < c.groups; ++g) {
      const float* xg = x + m * K + g * p.group;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t k = 0; k < p.group; k += 16)
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tail16(p.group - k), xg + k));
      xs[size_t(m * c.groups + g)] = _mm512_reduce_add_ps(acc);
    }
}

// Work below this many weight bytes runs on the calling thread: a fork-join costs more.
constexpr int64_t kMinParallelBytes = 192 << 10;
// Each parallel chunk streams at least this many weight bytes.
constexpr int64_t kChunkBytes = 48 << 10;

}  // namespace

bool gemv_avx512_supports(const MatMulWeight::Impl& p) {
  if (!avx512_enabled()) return false;
  if (!p.quantized) return true;
  if (p.bits == 8) return p.group % 16 == 0;
  if (p.bits != 2 && p.bits != 4) return false;
  if (int64_t(p.group) * p.bits % 32 != 0) return false;
  const int64_t wpg = int64_t(p.group) * p.bits / 32;
  return wpg < 16 ? 16 % wpg == 0 : wpg % 16 == 0;
}

void gemv_avx512(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                 const float* bias) {
  Ctx c{};
  c.p = &p;
  const int64_t K = p.K;
  if (!p.quantized) {
    c.fmt = p.w.dtype() == DType::BF16 ? Fmt::kBF16 : p.w.dtype() == DType::F16 ? Fmt::kF16 : Fmt::kF32;
    const int64_t B = c.fmt == Fmt::kBF16 ? 32 : 16;
    c.nblk = (K + B - 1) / B;
    c.kp = c.nblk * B;
  } else {
    c.fmt = p.bits == 2 ? Fmt::kQ2 : p.bits == 4 ? Fmt::kQ4 : Fmt::kQ8;
    c.groups = K / p.group;
    c.wpg = int64_t(p.group) * p.bits / 32;
    c.nblk = (p.w.dim(1) + 15) / 16;
    c.kp = p.bits == 8 ? K : c.nblk * 16 * (32 / p.bits);
    thread_local std::vector<int32_t> soff;
    block_groups(c.nblk, c.wpg, soff, c.lane_group);
    c.soff = soff.data();
  }
  thread_local std::vector<float> xp, xs;
  prepare(c, x, M, xp, xs);
  c.xp = xp.data();
  c.xs = xs.data();
  const int64_t N = p.N;
  const int64_t blocks = (N + kRows - 1) / kRows;
  auto work = [&](int64_t b0, int64_t b1) {
    const int64_t n0 = b0 * kRows, n1 = std::min(N, b1 * kRows);
    for (int64_t m = 0; m < M;) {
      const int64_t left = M - m;
      const int mb = left == 4 ? 2 : int(std::min<int64_t>(3, left));
      Ctx sub = c;
      sub.xp += m * c.kp;
      if (c.groups) sub.xs += m * c.groups;
      if (mb == 1) run_rows<1, kRows>(sub, n0, n1, y + m * N, N, bias);
      if (mb == 2) run_rows<2, kRows>(sub, n0, n1, y + m * N, N, bias);
      if (mb == 3) run_rows<3, 2>(sub, n0, n1, y + m * N, N, bias);
      m += mb;
    }
  };
  const int64_t bytes = int64_t(p.w.nbytes());
  if (bytes < kMinParallelBytes || pool.size() == 1) return work(0, blocks);
  const int64_t grain = std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(1, bytes / blocks));
  pool.parallel_for(blocks, grain, work);
}

// ---- Fast dense GEMV: bf16 weights · bf16-rounded activations (vdpbf16ps), f32 accumulation --
// The bf16 instructions come from a policy (matmul_x86.h): native, or emulated for tests.
namespace {

// y[m, n + r] for R rows from row n and MB activation rows (bf16, stride kp, zero padded).
template <class Isa, int MB, int R>
VLM_AVX512_BF16 void bf16_dot_rows(const uint16_t* w, int64_t K, const uint16_t* xb, int64_t kp, int64_t n, float* y,
                                   int64_t ldy, const float* bias) {
  __m512 acc[R][MB];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) acc[r][m] = _mm512_setzero_ps();
  const uint16_t* rows = w + n * K;
  auto step = [&](int64_t k, __mmask32 tail) VLM_AVX512_BF16 {
    __m512i xv[MB];
    for (int m = 0; m < MB; ++m) xv[m] = _mm512_loadu_si512(xb + m * kp + k);
    for (int r = 0; r < R; ++r) {
      const uint16_t* wr = rows + r * K + k;
      _mm_prefetch(reinterpret_cast<const char*>(wr + R * K), _MM_HINT_T0);  // the next pass's rows
      const __m512i wv = tail ? _mm512_maskz_loadu_epi16(tail, wr) : _mm512_loadu_si512(wr);
      for (int m = 0; m < MB; ++m) acc[r][m] = Isa::dot(acc[r][m], wv, xv[m]);
    }
  };
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) step(k, 0);
  if (k < K) step(k, __mmask32((1ull << (K - k)) - 1));
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) y[m * ldy + n + r] = _mm512_reduce_add_ps(acc[r][m]) + (bias ? bias[n + r] : 0.f);
}

// x rows rounded to bf16 (nearest even) once per call, zero padded to whole 32-value blocks.
template <class Isa>
VLM_AVX512_BF16 void round_to_bf16(const float* x, int64_t M, int64_t K, int64_t kp, std::vector<uint16_t>& out) {
  out.assign(size_t(M * kp), 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; k += 32) {
      const __m512 lo = _mm512_maskz_loadu_ps(tail16(K - k), x + m * K + k);
      const __m512 hi = _mm512_maskz_loadu_ps(tail16(K - k - 16), x + m * K + k + 16);
      _mm512_storeu_si512(out.data() + m * kp + k, Isa::round(lo, hi));
    }
}

template <class Isa, int MB>
void bf16_dot_range(const uint16_t* w, int64_t K, const uint16_t* xb, int64_t kp, int64_t n0, int64_t n1, float* y,
                    int64_t ldy, const float* bias) {
  constexpr int R = MB == 1 ? 4 : MB == 2 ? 4 : 2;
  int64_t n = n0;
  for (; n + R <= n1; n += R) bf16_dot_rows<Isa, MB, R>(w, K, xb, kp, n, y, ldy, bias);
  for (; n < n1; ++n) bf16_dot_rows<Isa, MB, 1>(w, K, xb, kp, n, y, ldy, bias);
}

template <class Isa>
void gemv_bf16_dot_impl(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                        const float* bias) {
  const int64_t K = p.K, N = p.N, kp = (K + 31) / 32 * 32;
  thread_local std::vector<uint16_t> xb_buffer;
  std::vector<uint16_t>& xb = xb_buffer;  // the caller's buffer: workers must not name the thread_local
  round_to_bf16<Isa>(x, M, K, kp, xb);
  const uint16_t* w = p.w.data<uint16_t>();
  auto work = [&](int64_t n0, int64_t n1) {
    for (int64_t m = 0; m < M;) {
      const int64_t left = M - m;
      const int mb = left == 4 ? 2 : int(std::min<int64_t>(3, left));
      const uint16_t* xm = xb.data() + m * kp;
      if (mb == 1) bf16_dot_range<Isa, 1>(w, K, xm, kp, n0, n1, y + m * N, N, bias);
      if (mb == 2) bf16_dot_range<Isa, 2>(w, K, xm, kp, n0, n1, y + m * N, N, bias);
      if (mb == 3) bf16_dot_range<Isa, 3>(w, K, xm, kp, n0, n1, y + m * N, N, bias);
      m += mb;
    }
  };
  const int64_t bytes = int64_t(p.w.nbytes());
  if (bytes < kMinParallelBytes || pool.size() == 1) return work(0, N);
  // One contiguous range of rows (a multiple of 4) per thread.
  const int64_t quads = (N + 3) / 4, per = (quads + pool.size() - 1) / pool.size();
  pool.parallel_for(quads, per, [&](int64_t q0, int64_t q1) { work(q0 * 4, std::min(N, q1 * 4)); });
}

}  // namespace

bool gemv_bf16_dot_supports(const MatMulWeight::Impl& p) {
  return !p.quantized && !p.repacked && p.w.dtype() == DType::BF16 && bf16_gemm_supported();
}

void gemv_bf16_dot(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                   const float* bias) {
  gemv_bf16_dot_impl<NativeBf16>(pool, p, x, M, y, bias);
}

void gemv_bf16_dot_emulated(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                            const float* bias) {
  gemv_bf16_dot_impl<EmulatedBf16>(pool, p, x, M, y, bias);
}

#else

bool gemv_bf16_dot_supports(const MatMulWeight::Impl&) {
  return false;
}
void gemv_bf16_dot(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                   const float* bias) {
  gemv(pool, p, x, M, y, bias);
}
void gemv_bf16_dot_emulated(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                            const float* bias) {
  gemv(pool, p, x, M, y, bias);
}

bool gemv_avx512_supports(const MatMulWeight::Impl&) {
  return false;
}
void gemv_avx512(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y,
                 const float* bias) {
  gemv(pool, p, x, M, y, bias);
}

#endif

}  // namespace vlm::matmul_detail
