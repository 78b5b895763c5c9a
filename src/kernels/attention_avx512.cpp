// Tiled flash attention for AVX-512 CPUs (the Highway kernel in attention.cpp is the fallback).
// A task owns one kv head and a tile of kTq "query rows", row r = (position r / group, query head
// kv_head·group + r % group), so all query heads of a kv head share every K/V load (GQA). For
// each key tile of kTk keys it computes the score tile with a register-blocked GEMM, applies the
// mask as a per-row key range, updates an online softmax and accumulates P·V into an f32 tile.
//   exact (Precision::kExact): f32 products, K pre-transposed per call to [D][S] so scores are
//     GEMM-shaped; P·V reads V in place. Differs from the per-row kernel only in summation order.
//   fast: Q, K, P, V rounded to bf16, vdpbf16ps with f32 accumulation; K packed as [D/2][S] pairs
//     of dimensions, V as [S/2][D] pairs of keys. Softmax, max and sums stay f32.
//   few query positions (decode): scores as direct dot products on the stored K rows (no packing:
//     K and V are read once, which is what bounds decode), f32 in both precisions.
// attention_avx512_emulated.cpp compiles this file again with VLM_ATTENTION_EMULATE_BF16, which
// emulates the bf16 instructions in AVX512F (matmul_x86.h) so tests run the fast path anywhere.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <new>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/attention_internal.h"
#include "kernels/matmul_x86.h"
#include "kernels/ops.h"

#ifdef VLM_ATTENTION_EMULATE_BF16
#define VLM_ATTENTION_ENTRY attention_avx512_emulated_bf16
#else
#define VLM_ATTENTION_ENTRY attention_avx512
#endif

namespace vlm::ops_detail {

#ifdef VLM_X86_KERNELS
#define VLM_ATTN_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
namespace {

using matmul_detail::tail16;
#ifdef VLM_ATTENTION_EMULATE_BF16
using Bf16 = matmul_detail::EmulatedBf16;
#else
using Bf16 = matmul_detail::NativeBf16;
#endif

constexpr int kMR = 6;                       // query rows per register tile
constexpr int64_t kTk = 64;                  // keys per tile: 4 zmm of scores per row
constexpr int64_t kTq = 24;                  // query rows per task (small: s, o and the K/V tiles stay in L1)
constexpr int64_t kMinPackedPositions = 16;  // fewer query positions: direct dot products
constexpr int kMaxPV = 8;                    // zmm of head dimensions per P·V register tile (rows: 24 / that)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

// e^x for x <= 0 as 2^n·e^r, |r| <= ln2/2; lanes not in `keep` are 0. Exact: Cephes expf
// polynomial (~1 ulp). Fast: degree-4 Taylor, relative error <= 4.3e-5, far below the 2^-8 bf16
// rounding the probabilities get next.
template <bool kFast>
VLM_ATTN_TARGET inline __m512 exp_le0(__m512 x, __mmask16 keep) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p;
  if constexpr (kFast) {
    p = _mm512_set1_ps(1.f / 24);
    for (float c : {1.f / 6, 0.5f, 1.f, 1.f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  } else {
    p = _mm512_set1_ps(1.9875691500e-4f);
    for (float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
      p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  }
  return _mm512_maskz_scalef_ps(keep, p, n);
}

// Scores s[i][0, 64) = Σ_d q[i][d]·kt[d][0, 64) for R rows: f32 (kt rows of floats, stride ldk)
// or bf16 pairs (uint32 words; d counts pairs).
template <int R, bool kBF16>
VLM_ATTN_TARGET void score_tile(const void* const* q, const void* kt, int64_t ldk, int64_t depth, float* s) {
  __m512 acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t d = 0; d < depth; ++d) {
    if constexpr (kBF16) {
      const uint32_t* k = static_cast<const uint32_t*>(kt) + d * ldk;
      __m512i kv[4];
      for (int v = 0; v < 4; ++v) kv[v] = _mm512_loadu_si512(k + 16 * v);
      for (int i = 0; i < R; ++i) {
        const __m512i qb = _mm512_set1_epi32(int(static_cast<const uint32_t*>(q[i])[d]));
        for (int v = 0; v < 4; ++v) acc[i][v] = Bf16::dot(acc[i][v], qb, kv[v]);
      }
    } else {
      const float* k = static_cast<const float*>(kt) + d * ldk;
      __m512 kv[4];
      for (int v = 0; v < 4; ++v) kv[v] = _mm512_loadu_ps(k + 16 * v);
      for (int i = 0; i < R; ++i) {
        const __m512 qb = _mm512_set1_ps(static_cast<const float*>(q[i])[d]);
        for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_fmadd_ps(qb, kv[v], acc[i][v]);
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(s + i * kTk + 16 * v, acc[i][v]);
}

// o[i][0, 16·NV) += Σ_j p[i][j]·v[j][0, 16·NV) for R rows over `keys` keys (bf16: pairs of keys,
// p rows of uint32 pairs, v rows of pairs with stride ldv words; f32: stride ldv floats, the
// last zmm masked by `last` when kMaskLast; GCC keeps the accumulators of that variant on the
// stack, so padded sources use the other). o rows have stride ldo floats.
template <int R, int NV, bool kBF16, bool kMaskLast>
VLM_ATTN_TARGET void pv_tile(const void* const* p, const void* v, int64_t ldv, int64_t keys, float* o, int64_t ldo,
                             __mmask16 last) {
  __m512 acc[R][NV];
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < NV; ++c) acc[i][c] = _mm512_loadu_ps(o + i * ldo + 16 * c);
  for (int64_t j = 0; j < keys; ++j) {
    // Broadcasts first, then one V vector at a time: R·NV + R + 1 <= 32 zmm, no spills.
    if constexpr (kBF16) {
      const uint32_t* vj = static_cast<const uint32_t*>(v) + j * ldv;
      __m512i pb[R];
      for (int i = 0; i < R; ++i) pb[i] = _mm512_set1_epi32(int(static_cast<const uint32_t*>(p[i])[j]));
      for (int c = 0; c < NV; ++c) {
        const __m512i vv = _mm512_loadu_si512(vj + 16 * c);
        for (int i = 0; i < R; ++i) acc[i][c] = Bf16::dot(acc[i][c], pb[i], vv);
      }
    } else {
      const float* vj = static_cast<const float*>(v) + j * ldv;
      __m512 pb[R];
      for (int i = 0; i < R; ++i) pb[i] = _mm512_set1_ps(static_cast<const float*>(p[i])[j]);
      for (int c = 0; c < NV; ++c) {
        __m512 vv = kMaskLast && c == NV - 1 ? _mm512_maskz_loadu_ps(last, vj + 16 * c) : _mm512_loadu_ps(vj + 16 * c);
        // Keeps vv in a register: GCC would otherwise fold the load into each of the R FMAs,
        // loading it R times (with R = 3 the loads, not the FMAs, bounded the loop).
        asm("" : "+v"(vv));
        for (int i = 0; i < R; ++i) acc[i][c] = _mm512_fmadd_ps(pb[i], vv, acc[i][c]);
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(o + i * ldo + 16 * c, acc[i][c]);
}

// Runtime (rows, vectors) -> instantiation tables.
template <bool kBF16, int... R>
constexpr auto score_table(std::integer_sequence<int, R...>) {
  return std::array{score_tile<R + 1, kBF16>...};
}
template <bool kBF16, bool kMaskLast, int NV, int... R>
constexpr auto pv_row_table(std::integer_sequence<int, R...>) {
  return std::array{pv_tile<R + 1, NV, kBF16, kMaskLast>...};
}
template <bool kBF16, bool kMaskLast, int... NV>
constexpr auto pv_table(std::integer_sequence<int, NV...>) {
  return std::array{pv_row_table<kBF16, kMaskLast, NV + 1>(std::make_integer_sequence<int, kMR>())...};
}
template <bool kBF16>
constexpr auto kScore = score_table<kBF16>(std::make_integer_sequence<int, kMR>());
template <bool kBF16, bool kMaskLast>
constexpr auto kPV = pv_table<kBF16, kMaskLast>(std::make_integer_sequence<int, kMaxPV>());

// A std::allocator whose blocks start on a cache line, so that no zmm load of the packed K/V
// tiles or of the score and output rows straddles two lines.
template <class T>
struct LineAligned {
  using value_type = T;
  LineAligned() = default;
  template <class U>
  LineAligned(const LineAligned<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const LineAligned<U>&) const {
    return true;
  }
};
template <class T>
using AlignedVector = std::vector<T, LineAligned<T>>;

struct Problem {
  const float *q, *k, *v;
  int64_t q_stride, kv_stride, T, S;
  int q_heads, kv_heads, head_dim;
  float scale;
  const AttentionMask* mask;
  float* out;
};

// K and V of every kv head in the layouts the packed kernels read (see the file comment).
struct Packed {
  int64_t Sp = 0, Dp = 0, Dv = 0;   // keys padded to tiles, dimension pairs, dimensions padded to zmm
  AlignedVector<float> kt, vf;      // exact: [kv_heads][Sp/64][D][64], [kv_heads][Sp][Dv]
  AlignedVector<uint32_t> ktp, vp;  // fast: [kv_heads][Sp/64][Dp][64], [kv_heads][Sp/2][Dv]
};

// Keys [j0, j1) of kv head h into the packed layouts, zero padded: K transposed 16 keys at a time
// with gathers, V as pairs of consecutive keys.
VLM_ATTN_TARGET void pack_chunk(const Problem& pb, bool bf16, Packed& pk, int64_t h, int64_t j0, int64_t j1) {
  const int64_t D = pb.head_dim;
  const float* kh = pb.k + h * D;
  const float* vh = pb.v + h * D;
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(int(pb.kv_stride)));
  const int64_t j_end = j1 == pb.S ? pk.Sp : j1;  // the last chunk zero-pads to whole key tiles
  for (int64_t j = j0; j < j_end; j += 16) {
    const __mmask16 valid = tail16(pb.S - j);
    const float* kj = kh + j * pb.kv_stride;
    if (!bf16) {
      float* kt = pk.kt.data() + h * D * pk.Sp + j / kTk * D * kTk + j % kTk;
      for (int64_t d = 0; d < D; ++d)
        _mm512_storeu_ps(kt + d * kTk, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, rows, kj + d, 4));
      continue;
    }
    uint32_t* kt = pk.ktp.data() + h * pk.Dp * pk.Sp + j / kTk * pk.Dp * kTk + j % kTk;
    for (int64_t dp = 0; dp < pk.Dp; ++dp) {
      const __m512 a = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, rows, kj + 2 * dp, 4);
      const __m512 b = 2 * dp + 1 < D ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, rows, kj + 2 * dp + 1, 4)
                                      : _mm512_setzero_ps();
      const __m512i lo16 = _mm512_cvtepu16_epi32(Bf16::round16(a));
      const __m512i hi16 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(Bf16::round16(b)), 16);
      _mm512_storeu_si512(kt + dp * kTk, _mm512_or_si512(lo16, hi16));
    }
  }
  if (!bf16) {
    // V rows copied contiguously: the strided originals (often one row per 3·E floats) would miss
    // the TLB on nearly every key of a tile.
    for (int64_t j = j0; j < j_end; ++j)
      for (int64_t d = 0; d < pk.Dv; d += 16)
        _mm512_storeu_ps(
            pk.vf.data() + (h * pk.Sp + j) * pk.Dv + d,
            j < pb.S ? _mm512_maskz_loadu_ps(tail16(D - d), vh + j * pb.kv_stride + d) : _mm512_setzero_ps());
    return;
  }
  uint32_t* vp = pk.vp.data() + h * pk.Sp / 2 * pk.Dv;
  for (int64_t j = j0; j < j_end; j += 2)
    for (int64_t d = 0; d < pk.Dv; d += 16) {
      const __mmask16 m = tail16(D - d);
      const __m512 a = j < pb.S ? _mm512_maskz_loadu_ps(m, vh + j * pb.kv_stride + d) : _mm512_setzero_ps();
      const __m512 b = j + 1 < pb.S ? _mm512_maskz_loadu_ps(m, vh + (j + 1) * pb.kv_stride + d) : _mm512_setzero_ps();
      const __m512i lo16 = _mm512_cvtepu16_epi32(Bf16::round16(a));
      const __m512i hi16 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(Bf16::round16(b)), 16);
      _mm512_storeu_si512(vp + j / 2 * pk.Dv + d, _mm512_or_si512(lo16, hi16));
    }
}

void pack_kv(ThreadPool& pool, const Problem& pb, bool bf16, Packed& pk) {
  const int64_t D = pb.head_dim;
  pk.Sp = round_up(pb.S, kTk);
  pk.Dp = (D + 1) / 2;
  pk.Dv = round_up(D, 16);
  // Grown, never cleared: pack_chunk writes every element the kernels read, padding included.
  if (bf16) {
    pk.ktp.resize(std::max(pk.ktp.size(), size_t(pb.kv_heads * pk.Dp * pk.Sp)));
    pk.vp.resize(std::max(pk.vp.size(), size_t(pb.kv_heads * pk.Sp / 2 * pk.Dv)));
  } else {
    pk.kt.resize(std::max(pk.kt.size(), size_t(pb.kv_heads * D * pk.Sp)));
    pk.vf.resize(std::max(pk.vf.size(), size_t(pb.kv_heads * pk.Sp * pk.Dv)));
  }
  const int64_t chunk = 256, chunks = (pb.S + chunk - 1) / chunk;  // even: V pairs stay in one chunk
  pool.run(pb.kv_heads * chunks, [&](int64_t task) {
    const int64_t j0 = task % chunks * chunk;
    pack_chunk(pb, bf16, pk, task / chunks, j0, std::min(pb.S, j0 + chunk));
  });
}

// Direct scores (decode): s[i][jj] = q_i·k_{j0+jj} for jj < n.
VLM_ATTN_TARGET void direct_scores(const float* const* q, int rows, const float* k, int64_t kv_stride, int64_t j0,
                                   int64_t n, int64_t D, float* s) {
  for (int64_t jj = 0; jj < n; ++jj) {
    const float* kj = k + (j0 + jj) * kv_stride;
    __m512 acc[kMR];
    for (int i = 0; i < rows; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) {
      const __mmask16 m = tail16(D - d);
      const __m512 kv = _mm512_maskz_loadu_ps(m, kj + d);
      for (int i = 0; i < rows; ++i) acc[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q[i] + d), kv, acc[i]);
    }
    for (int i = 0; i < rows; ++i) s[i * kTk + jj] = _mm512_reduce_add_ps(acc[i]);
  }
}

// Rows [r0, r1) of kv head kvh over keys [key_begin, key_end). partial == nullptr: writes the
// normalised outputs; else [rows][D + 2] = unnormalised Σ p·v, running max, Σ p (split keys).
template <bool kBF16>
VLM_ATTN_TARGET void attention_task(const Problem& pb, const Packed& pk, bool packed, int64_t kvh, int64_t r0,
                                    int64_t r1, int64_t key_begin, int64_t key_end, float* partial) {
  const int64_t D = pb.head_dim, group = pb.q_heads / pb.kv_heads, Dv = round_up(D, 16), Dp = (D + 1) / 2;
  const int64_t rows = r1 - r0;
  thread_local AlignedVector<float> fbuf;
  thread_local AlignedVector<uint32_t> wbuf;
  fbuf.resize(std::max(fbuf.size(), size_t(rows * (Dv + kTk + Dv + 16))));
  wbuf.resize(std::max(wbuf.size(), size_t(rows * (Dp + kTk / 2))));
  float* qs = fbuf.data();          // [rows][Dv] scaled queries (f32 paths)
  float* s = qs + rows * Dv;        // [rows][kTk] scores, then probabilities
  float* o = s + rows * kTk;        // [rows][Dv] Σ p·v
  float* lane_sum = o + rows * Dv;  // [rows][16] Σ p per lane (fast)
  uint32_t* qp = wbuf.data();       // [rows][Dp] scaled queries as bf16 pairs
  uint32_t* pp = qp + rows * Dp;    // [rows][kTk/2] probabilities as bf16 pairs
  std::fill(o, o + rows * (Dv + 16), 0.f);
  std::vector<int64_t> lo(static_cast<size_t>(rows)), hi(static_cast<size_t>(rows));
  std::vector<float> mx(size_t(rows), kNegInf);
  std::vector<double> sum(size_t(rows), 0.0);
  int64_t tile_lo = pb.S, tile_hi = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = (r0 + r) / group, h = kvh * group + (r0 + r) % group;
    const float* qr = pb.q + t * pb.q_stride + h * D;
    for (int64_t d = 0; d < D; ++d) qs[r * Dv + d] = qr[d] * pb.scale;
    if (kBF16) {
      for (int64_t d = 0; d < D; d += 2)
        qp[r * Dp + d / 2] =
            uint32_t(f32_to_bf16(qs[r * Dv + d])) | uint32_t(d + 1 < D ? f32_to_bf16(qs[r * Dv + d + 1]) : 0) << 16;
    }
    pb.mask->key_range(pb.S, t, lo[size_t(r)], hi[size_t(r)]);
    lo[size_t(r)] = std::max(lo[size_t(r)], key_begin);
    hi[size_t(r)] = std::min(hi[size_t(r)], key_end);
    if (lo[size_t(r)] < hi[size_t(r)]) {
      tile_lo = std::min(tile_lo, lo[size_t(r)]);
      tile_hi = std::max(tile_hi, hi[size_t(r)]);
    }
  }
  const float* kh = pb.k + kvh * D;
  const float* vh = pb.v + kvh * D;
  for (int64_t j0 = tile_lo / kTk * kTk; j0 < tile_hi; j0 += kTk) {
    const int64_t n = std::min(pb.S, j0 + kTk) - j0;
    // Scores for every row of the task.
    for (int64_t i0 = 0; i0 < rows; i0 += kMR) {
      const int R = int(std::min<int64_t>(kMR, rows - i0));
      if (!packed) {
        const float* qr[kMR];
        for (int i = 0; i < R; ++i) qr[i] = qs + (i0 + i) * Dv;
        direct_scores(qr, R, kh, pb.kv_stride, j0, n, D, s + i0 * kTk);
        continue;
      }
      const void* qr[kMR];
      for (int i = 0; i < R; ++i)
        qr[i] = kBF16 ? static_cast<const void*>(qp + (i0 + i) * Dp) : static_cast<const void*>(qs + (i0 + i) * Dv);
      const int64_t depth = kBF16 ? Dp : D;
      const void* kt = kBF16 ? static_cast<const void*>(pk.ktp.data() + (kvh * pk.Sp + j0) * depth)
                             : static_cast<const void*>(pk.kt.data() + (kvh * pk.Sp + j0) * depth);
      kScore<kBF16>[size_t(R - 1)](qr, kt, kTk, depth, s + i0 * kTk);
    }
    // Online softmax: masked lanes get probability 0; rows rescale their sums and outputs.
    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s + r * kTk;
      __mmask16 keep[4] = {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF};
      const bool whole = lo[size_t(r)] <= j0 && j0 + kTk <= hi[size_t(r)];
      __m512 m = _mm512_set1_ps(kNegInf);
      for (int v = 0; v < 4; ++v) {
        if (!whole) {
          const int64_t j = j0 + 16 * v;
          const int64_t a = std::clamp<int64_t>(lo[size_t(r)] - j, 0, 16),
                        b = std::clamp<int64_t>(hi[size_t(r)] - j, 0, 16);
          keep[v] = a < b ? __mmask16(tail16(b) & ~tail16(a)) : __mmask16(0);
        }
        m = _mm512_mask_max_ps(m, keep[v], m, _mm512_loadu_ps(sr + 16 * v));
      }
      // Reduce only when a lane exceeds the running max (rare after the first tiles).
      const bool grows = _mm512_cmp_ps_mask(m, _mm512_set1_ps(mx[size_t(r)]), _CMP_GT_OQ) != 0;
      const float tile_max = grows ? _mm512_reduce_max_ps(m) : mx[size_t(r)];
      if (tile_max == kNegInf) {  // nothing visible yet
        for (int v = 0; v < 4; ++v) _mm512_storeu_ps(sr + 16 * v, _mm512_setzero_ps());
        if (kBF16 && packed)
          for (int v = 0; v < 2; ++v) _mm512_storeu_si512(pp + r * kTk / 2 + 16 * v, _mm512_setzero_si512());
        continue;
      }
      const float new_max = std::max(mx[size_t(r)], tile_max);
      if (mx[size_t(r)] != kNegInf && mx[size_t(r)] != new_max) {
        const float correction = std::exp(mx[size_t(r)] - new_max);
        sum[size_t(r)] *= correction;
        if (kBF16)
          _mm512_storeu_ps(lane_sum + r * 16,
                           _mm512_mul_ps(_mm512_loadu_ps(lane_sum + r * 16), _mm512_set1_ps(correction)));
        for (int64_t d = 0; d < Dv; d += 16)
          _mm512_storeu_ps(o + r * Dv + d, _mm512_mul_ps(_mm512_loadu_ps(o + r * Dv + d), _mm512_set1_ps(correction)));
      }
      mx[size_t(r)] = new_max;
      const __m512 mv = _mm512_set1_ps(new_max);
      __m512 e[4], total = _mm512_setzero_ps();
      for (int v = 0; v < 4; ++v) {
        e[v] = exp_le0<kBF16>(_mm512_sub_ps(_mm512_loadu_ps(sr + 16 * v), mv), keep[v]);
        total = _mm512_add_ps(total, e[v]);
        _mm512_storeu_ps(sr + 16 * v, e[v]);
      }
      // Fast: per-lane f32 sums, reduced once at the end (f32 rounding ~1e-6, far below bf16's).
      if (kBF16)
        _mm512_storeu_ps(lane_sum + r * 16, _mm512_add_ps(_mm512_loadu_ps(lane_sum + r * 16), total));
      else
        sum[size_t(r)] += double(_mm512_reduce_add_ps(total));
      if (kBF16 && packed)
        for (int v = 0; v < 2; ++v) _mm512_storeu_si512(pp + r * kTk / 2 + 16 * v, Bf16::round(e[2 * v], e[2 * v + 1]));
    }
    // o += p · v in column chunks of at most kMaxPV zmm (as even as possible), rows per register
    // tile so that the accumulators fit in 24 zmm.
    const int64_t vecs = Dv / 16, chunks = (vecs + kMaxPV - 1) / kMaxPV;
    for (int64_t ci = 0, c0 = 0; ci < chunks; ++ci) {
      const int NV = int((vecs - c0 / 16) / (chunks - ci));
      const int tile_rows = std::min(kMR, std::max(1, 24 / NV));
      const __mmask16 last = tail16(D - c0 - 16 * (NV - 1));
      for (int64_t i0 = 0; i0 < rows; i0 += tile_rows) {
        const int R = int(std::min<int64_t>(tile_rows, rows - i0));
        const void* pr[kMR];
        if (kBF16 && packed) {
          for (int i = 0; i < R; ++i) pr[i] = pp + (i0 + i) * kTk / 2;
          const uint32_t* vt = pk.vp.data() + (kvh * pk.Sp + j0) / 2 * pk.Dv + c0;
          kPV<true, false>[size_t(NV - 1)][size_t(R - 1)](pr, vt, pk.Dv, (n + 1) / 2, o + i0 * Dv + c0, Dv, last);
        } else {
          for (int i = 0; i < R; ++i) pr[i] = s + (i0 + i) * kTk;
          const float* vt = packed ? pk.vf.data() + (kvh * pk.Sp + j0) * Dv + c0 : vh + j0 * pb.kv_stride + c0;
          (packed ? kPV<false, false> : kPV<false, true>)[size_t(NV - 1)][size_t(R - 1)](
              pr, vt, packed ? Dv : pb.kv_stride, n, o + i0 * Dv + c0, Dv, last);
        }
      }
      c0 += 16 * NV;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = (r0 + r) / group, h = kvh * group + (r0 + r) % group;
    if (kBF16) sum[size_t(r)] = double(_mm512_reduce_add_ps(_mm512_loadu_ps(lane_sum + r * 16)));
    if (partial) {
      float* pr = partial + r * (D + 2);
      std::copy(o + r * Dv, o + r * Dv + D, pr);
      pr[D] = mx[size_t(r)];
      pr[D + 1] = float(sum[size_t(r)]);
      continue;
    }
    const float inv = sum[size_t(r)] > 0 ? float(1.0 / sum[size_t(r)]) : 0.f;
    float* out = pb.out + (t * pb.q_heads + h) * D;
    for (int64_t d = 0; d < D; ++d) out[d] = o[r * Dv + d] * inv;
  }
}

}  // namespace

bool VLM_ATTENTION_ENTRY(ThreadPool& pool, bool fast, const float* q, int64_t q_stride, const float* k, const float* v,
                         int64_t kv_stride, int64_t T, int64_t S, int q_heads, int kv_heads, int head_dim, float scale,
                         const AttentionMask& mask, float* out) {
#ifdef VLM_ATTENTION_EMULATE_BF16
  const bool cpu_bf16 = true;
#else
  static const bool cpu_bf16 = __builtin_cpu_supports("avx512bf16");
#endif
  if (!matmul_detail::avx512_enabled()) return false;
  const Problem pb{q, k, v, q_stride, kv_stride, T, S, q_heads, kv_heads, head_dim, scale, &mask, out};
  const bool packed = T >= kMinPackedPositions;
  const bool bf16 = fast && packed && cpu_bf16;
  // The caller's buffers, reused across calls (a lambda naming a thread_local would see the
  // worker's own instance, hence the reference).
  thread_local Packed packed_kv;
  Packed& pk = packed_kv;
  if (packed) pack_kv(pool, pb, bf16, pk);
  const int64_t rows = T * (q_heads / kv_heads), tiles = (rows + kTq - 1) / kTq;
  // Few tasks over many keys (decode with fewer kv heads than threads): split the keys into
  // chunks, each task keeping its own softmax state, and merge them afterwards.
  int64_t chunks = 1;
  while (!packed && kv_heads * tiles * chunks < 2 * pool.size() && S / (2 * chunks) >= 1024) chunks *= 2;
  if (chunks > 1) {
    const int64_t chunk = round_up((S + chunks - 1) / chunks, kTk), D = head_dim;
    thread_local std::vector<float> partial_buf;
    partial_buf.resize(size_t(kv_heads * tiles * chunks * kTq * (D + 2)));
    float* partial = partial_buf.data();
    auto part = [&](int64_t kvh, int64_t tile, int64_t c) {
      return partial + ((kvh * tiles + tile) * chunks + c) * kTq * (D + 2);
    };
    pool.run(kv_heads * tiles * chunks, [&](int64_t task) {
      const int64_t c = task % chunks, tile = task / chunks % tiles, kvh = task / chunks / tiles;
      attention_task<false>(pb, pk, false, kvh, tile * kTq, std::min(rows, (tile + 1) * kTq), c * chunk,
                            std::min(S, (c + 1) * chunk), part(kvh, tile, c));
    });
    const int64_t group = q_heads / kv_heads;
    for (int64_t kvh = 0; kvh < kv_heads; ++kvh)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t tile = r / kTq, t = r / group, h = kvh * group + r % group;
        float m = kNegInf;
        for (int64_t c = 0; c < chunks; ++c) m = std::max(m, part(kvh, tile, c)[(r % kTq) * (D + 2) + D]);
        float* o = out + (t * q_heads + h) * D;
        std::fill(o, o + D, 0.f);
        double total = 0;
        for (int64_t c = 0; c < chunks && m != kNegInf; ++c) {
          const float* pr = part(kvh, tile, c) + (r % kTq) * (D + 2);
          if (pr[D] == kNegInf) continue;
          const float w = std::exp(pr[D] - m);
          total += double(w) * pr[D + 1];
          for (int64_t d = 0; d < D; ++d) o[d] += w * pr[d];
        }
        const float inv = total > 0 ? float(1.0 / total) : 0.f;
        for (int64_t d = 0; d < D; ++d) o[d] *= inv;
      }
    return true;
  }
  // Tasks go head by head, so one head's packed K and V stay in L2 while its row tiles sweep
  // them (cycling through the heads fetched them from L3 for every task: the vision tower's
  // attention ran 25-35% slower). Within a head, later row tiles see more keys under a causal
  // mask: they go first.
  pool.run(kv_heads * tiles, [&](int64_t task) {
    const int64_t tile = tiles - 1 - task % tiles, kvh = task / tiles;
    const int64_t r0 = tile * kTq, r1 = std::min(rows, r0 + kTq);
    if (bf16)
      attention_task<true>(pb, pk, packed, kvh, r0, r1, 0, S, nullptr);
    else
      attention_task<false>(pb, pk, packed, kvh, r0, r1, 0, S, nullptr);
  });
  return true;
}

#else

bool VLM_ATTENTION_ENTRY(ThreadPool&, bool, const float*, int64_t, const float*, const float*, int64_t, int64_t,
                         int64_t, int, int, int, float, const AttentionMask&, float*) {
  return false;
}

#endif

}  // namespace vlm::ops_detail
