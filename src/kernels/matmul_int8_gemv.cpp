// int8 GEMV (MatMulPrecision::kInt8, 1-6 activation rows), see matmul_int8.h. A block is 16
// packed words (one per 32-bit lane); its bytes split into P = 8/bits planes of unsigned values
// with one shift and one and each, and every plane meets a matching plane of int8 activations in
// one vpdpbusd. A lane holds 4·P consecutive values, all in one group, so each lane's integer sum
// is scaled by s_w·s_x of its group (a per-lane lookup) once per block.
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul_int8.h"

namespace vlm::matmul_detail {

bool int8_supports(const MatMulWeight::Impl& p) {
  if (!p.quantized || !avx512_vnni_enabled()) return false;
  if (p.bits != 2 && p.bits != 4 && p.bits != 8) return false;
  if (p.group % 16 != 0 || p.group > 512) return false;  // 512: GEMM K slice
  const int64_t wpg = int64_t(p.group) * p.bits / 32;
  return wpg < 16 ? 16 % wpg == 0 : wpg % 16 == 0;
}

#ifdef VLM_X86_KERNELS
namespace {

constexpr int kRows = 4;
constexpr int64_t kMinParallelBytes = 192 << 10;
constexpr int64_t kChunkBytes = 48 << 10;

struct Ctx {
  const MatMulWeight::Impl* p;
  int64_t wpr, nblk, wpg, groups, kp;
  const int32_t* soff;  // [nblk] first group of each block, see block_groups
  int32_t lane_group[16];
  const int8_t* xq;   // [M, kp] activations, planes of each block contiguous, zero padded
  const float* sx;    // [M, groups]
  const float* xsum;  // [M, groups]
};

template <int BITS, int MB, int R>
VLM_AVX512_VNNI void rows_int8(const Ctx& c, int64_t n, float* y, int64_t ldy, const float* bias, float* sbuf) {
  constexpr int P = 8 / BITS;
  const MatMulWeight::Impl& p = *c.p;
  const int64_t gs = padded_groups(c.groups);
  __m512 tot[R][MB];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) {
      // ss = s_w·s_x per group; the lane accumulators start at the bias term Σ_g b_g·Σx_g.
      scales_to_f32(p.scales.dtype(), p.scales.raw(), (n + r) * c.groups, c.groups, c.sx + m * c.groups,
                    sbuf + (r * MB + m) * gs);
      tot[r][m] = dot_lanes(p.biases.dtype(), p.biases.raw(), (n + r) * c.groups, c.xsum + m * c.groups, c.groups,
                            _mm512_setzero_ps());
    }
  const __m512i gidx = _mm512_loadu_si512(c.lane_group);
  const __m512i mask = _mm512_set1_epi8(char((1 << BITS) - 1));
  const uint32_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = p.w.data<uint32_t>() + (n + r) * c.wpr;
  const int64_t full = c.wpr / 16;
  for (int64_t b = 0; b < c.nblk; ++b) {
    const __mmask16 wm = b < full ? __mmask16(0xFFFF) : __mmask16((1u << (c.wpr - b * 16)) - 1);
    __m512i w[R], acc[R][MB];
    for (int r = 0; r < R; ++r) {
      // The next pass's data (see prefetch() in matmul_gemv_avx512.cpp).
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + R * c.wpr + b * 16), _MM_HINT_T0);
      w[r] = _mm512_maskz_loadu_epi32(wm, rows[r] + b * 16);
      for (int m = 0; m < MB; ++m) acc[r][m] = _mm512_setzero_si512();
    }
    for (int j = 0; j < P; ++j) {
      __m512i xv[MB];
      for (int m = 0; m < MB; ++m) xv[m] = _mm512_loadu_si512(c.xq + m * c.kp + (b * P + j) * 64);
      for (int r = 0; r < R; ++r) {
        __m512i q = w[r];
        if constexpr (BITS != 8) q = _mm512_and_si512(j == 0 ? q : _mm512_srli_epi16(q, j * BITS), mask);
        for (int m = 0; m < MB; ++m) dpbusd(acc[r][m], q, xv[m]);
      }
    }
    const int64_t soff = c.soff[b];
    for (int r = 0; r < R; ++r)
      for (int m = 0; m < MB; ++m) {
        const __m512 sv = _mm512_permutexvar_ps(gidx, _mm512_loadu_ps(sbuf + (r * MB + m) * gs + soff));
        tot[r][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][m]), sv, tot[r][m]);
      }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) y[m * ldy + n + r] = _mm512_reduce_add_ps(tot[r][m]) + (bias ? bias[n + r] : 0.f);
}

template <int MB, int R>
VLM_AVX512_VNNI void run_rows(const Ctx& c, int64_t n0, int64_t n1, float* y, int64_t ldy, const float* bias) {
  thread_local std::vector<float> sbuf;
  sbuf.resize(size_t(R * MB * padded_groups(c.groups)));
  auto rows = [&](auto rtag, int64_t n) VLM_AVX512_VNNI {
    constexpr int RR = decltype(rtag)::value;
    switch (c.p->bits) {
      case 2: return rows_int8<2, MB, RR>(c, n, y, ldy, bias, sbuf.data());
      case 4: return rows_int8<4, MB, RR>(c, n, y, ldy, bias, sbuf.data());
      default: return rows_int8<8, MB, RR>(c, n, y, ldy, bias, sbuf.data());
    }
  };
  int64_t n = n0;
  for (; n + R <= n1; n += R) rows(std::integral_constant<int, R>(), n);
  for (; n < n1; ++n) rows(std::integral_constant<int, 1>(), n);
}

}  // namespace

void gemv_int8(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  Ctx c{};
  c.p = &p;
  const int64_t K = p.K, P = 8 / p.bits, B = 64 * P;  // values per block
  c.wpr = p.w.dim(1);
  c.nblk = (c.wpr + 15) / 16;
  c.wpg = int64_t(p.group) * p.bits / 32;
  c.groups = K / p.group;
  c.kp = c.nblk * B;
  thread_local std::vector<int32_t> soff;
  block_groups(c.nblk, c.wpg, soff, c.lane_group);
  c.soff = soff.data();
  thread_local QuantizedX qx;
  thread_local std::vector<int8_t> planes;
  qx.groups = c.groups;
  qx.q.resize(size_t(M * K));
  qx.scale.resize(size_t(M * c.groups));
  qx.sum.resize(size_t(M * c.groups));
  quantize_rows(x, 0, M, K, p.group, qx);
  // Byte i of a block holds values P·i .. P·i + P-1; plane j gathers value P·i + j of each byte.
  planes.assign(size_t(M * c.kp), 0);
  for (int64_t m = 0; m < M; ++m) {
    const int8_t* q = qx.q.data() + m * K;
    int8_t* out = planes.data() + m * c.kp;
    for (int64_t k0 = 0; k0 < K; k0 += B)
      for (int64_t i = 0; i < 64; ++i)
        for (int64_t j = 0; j < P && k0 + P * i + j < K; ++j) out[k0 + j * 64 + i] = q[k0 + P * i + j];
  }
  c.xq = planes.data();
  c.sx = qx.scale.data();
  c.xsum = qx.sum.data();
  const int64_t N = p.N, blocks = (N + kRows - 1) / kRows;
  auto work = [&](int64_t b0, int64_t b1) {
    const int64_t n0 = b0 * kRows, n1 = std::min(N, b1 * kRows);
    for (int64_t m = 0; m < M;) {
      const int64_t left = M - m;
      const int mb = left == 4 ? 2 : int(std::min<int64_t>(3, left));
      Ctx sub = c;
      sub.xq += m * c.kp;
      sub.sx += m * c.groups;
      sub.xsum += m * c.groups;
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

#else

void gemv_int8(ThreadPool& pool, const MatMulWeight::Impl& p, const float* x, int64_t M, float* y, const float* bias) {
  gemv(pool, p, x, M, y, bias);
}

#endif

}  // namespace vlm::matmul_detail
