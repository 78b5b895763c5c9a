// Repacked 2/4/8-bit weights (layout in matmul_repack.h) and their int8 GEMV/GEMM.
// y[m, n] = Σ_g s[n,g]·sx[m,g]·(Σ_k q[n,k]·xq[m,k]) + b[n,g]·Σx[m,g]: integer dot products per
// group with vpdpbusd, one float fold per group; each accumulator lane is an output row.
#include "kernels/matmul_repack.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/matmul_int8.h"
#include "kernels/matmul_x86.h"

namespace vlm::matmul_detail {

namespace {
constexpr int kPR = RepackedQuant::kPanelRows;
// Largest group whose int32 sums cannot overflow (see panels_kernel); MLX uses 32, 64 and 128.
constexpr int kMaxGroup = 512;

// A packed word's V = 32/bits values as one block dword: value w to byte w % 4, bits
// [(w / 4)·bits, ...). pdep scatters each run of 4 values into its plane in one instruction
// (every AVX512_VNNI CPU has BMI2); 8-bit words are already in place.
#ifdef VLM_X86_KERNELS
__attribute__((target("bmi2"))) uint32_t interleave_word(uint32_t word, int bits) {
  if (bits == 8) return word;
  const uint32_t plane_mask = bits == 4 ? 0x0F0F0F0Fu : 0x03030303u;
  uint32_t out = 0;
  for (int plane = 0; plane < 8 / bits; ++plane)
    out |= _pdep_u32(word >> (plane * 4 * bits), plane_mask << (plane * bits));
  return out;
}
#else
uint32_t interleave_word(uint32_t word, int bits) {
  const uint32_t mask = (1u << bits) - 1;
  uint32_t out = 0;
  for (int w = 0; w < 32 / bits; ++w) out |= ((word >> (w * bits)) & mask) << ((w & 3) * 8 + (w >> 2) * bits);
  return out;
}
#endif
}  // namespace

// A 64-byte-aligned U8 tensor whose 2 MiB-aligned interior asks for transparent huge pages
// (THP "madvise" mode): first-touch 4 KiB page faults dominated repacking (~2 s of CPU per GB
// in this VM); the decode-step streaming rate measured the same either way.
Tensor alloc_huge_bytes(int64_t n) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t bytes = (size_t(std::max<int64_t>(n, 1)) + 63) / 64 * 64;
  // posix_memalign, not aligned_alloc: the size need not be a multiple of the 2 MiB alignment.
  void* p = nullptr;
  if (posix_memalign(&p, bytes >= kHuge ? kHuge : 64, bytes) != 0)
    fail("repack: out of memory allocating ", bytes, " bytes");
#ifdef MADV_HUGEPAGE
  if (bytes >= kHuge) madvise(p, bytes / kHuge * kHuge, MADV_HUGEPAGE);
#endif
  return Tensor::borrow(DType::U8, {n}, p,
                        std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); }));
}

bool repack_supports(const MatMulWeight::Impl& p) {
  if (!p.quantized || !avx512_vnni_enabled()) return false;
  return (p.bits == 2 || p.bits == 4 || p.bits == 8) && p.group % 16 == 0 && p.group <= kMaxGroup;
}

std::shared_ptr<const RepackedQuant> repack_quantized(ThreadPool& pool, const MatMulWeight::Impl& p) {
  auto rq = std::make_shared<RepackedQuant>();
  rq->N = p.N;
  rq->K = p.K;
  rq->bits = p.bits;
  rq->group = p.group;
  rq->groups = p.K / p.group;
  rq->panels = (p.N + kPR - 1) / kPR;
  rq->sdtype = p.scales.dtype();
  const int64_t ssize = int64_t(dtype_size(rq->sdtype));
  rq->scale_bytes = 2 * kPR * ssize;
  rq->group_stride = rq->scale_bytes + 2 * int64_t(p.group) * p.bits;
  rq->panel_stride = rq->groups * rq->group_stride;
  rq->data = alloc_huge_bytes(rq->panels * rq->panel_stride);
  // Every byte of full panels is written below; the last panel's padding rows stay zero.
  if (rq->panels > 0)
    std::memset(rq->data.data<uint8_t>() + (rq->panels - 1) * rq->panel_stride, 0, size_t(rq->panel_stride));
  const int bits = p.bits, V = 32 / bits, G = p.group;
  const int64_t wpr = p.w.dim(1);
  const auto* sb = static_cast<const uint8_t*>(p.scales.raw());
  const auto* bb = static_cast<const uint8_t*>(p.biases.raw());
  uint8_t* out = rq->data.data<uint8_t>();
  // The scale dtype differs from the bias dtype only in odd checkpoints; both become sdtype.
  const bool same_dtype = p.biases.dtype() == rq->sdtype;
  pool.parallel_for(rq->panels, 16, [&](int64_t p0, int64_t p1) {
    for (int64_t pn = p0; pn < p1; ++pn)
      for (int l = 0; l < kPR && pn * kPR + l < p.N; ++l) {
        const int64_t n = pn * kPR + l;
        const uint32_t* row = p.w.data<uint32_t>() + n * wpr;
        for (int64_t g = 0; g < rq->groups; ++g) {
          uint8_t* dst = out + pn * rq->panel_stride + g * rq->group_stride;
          const int64_t si = n * rq->groups + g;
          std::memcpy(dst + l * ssize, sb + si * ssize, size_t(ssize));
          if (same_dtype) {
            std::memcpy(dst + kPR * ssize + l * ssize, bb + si * ssize, size_t(ssize));
          } else {  // convert through float (f32 targets are exact; 16-bit mixes are not seen in practice)
            const float b = load_float(p.biases.dtype(), p.biases.raw(), si);
            uint8_t* bd = dst + kPR * ssize + l * ssize;
            if (rq->sdtype == DType::F32) std::memcpy(bd, &b, 4);
            const uint16_t h = rq->sdtype == DType::BF16 ? f32_to_bf16(b) : f32_to_f16(b);
            if (rq->sdtype != DType::F32) std::memcpy(bd, &h, 2);
          }
          // Block j's dword of this row holds exactly packed word g·G/V + j, bits rearranged.
          uint8_t* wdst = dst + rq->scale_bytes + l * 4;
          const uint32_t* words = row + g * G / V;
          for (int64_t j = 0; j < G / V; ++j) {
            const uint32_t out_word = interleave_word(words[j], bits);
            std::memcpy(wdst + j * 64, &out_word, 4);
          }
        }
      }
  });
  return rq;
}

void repacked_dequantize_range(const RepackedQuant& rq, int64_t r, int64_t k0, int64_t n, float* out) {
  const int64_t l = r % kPR, ssize = int64_t(dtype_size(rq.sdtype));
  const int vshift = rq.bits == 2 ? 4 : rq.bits == 4 ? 3 : 2;  // log2(32 / bits)
  const uint32_t mask = (1u << rq.bits) - 1;
  const uint8_t* panel = rq.panel(r / kPR);
  for (int64_t k = k0; k < k0 + n;) {
    const int64_t g = k / rq.group, gend = std::min(k0 + n, (g + 1) * rq.group);
    const uint8_t* grp = panel + g * rq.group_stride;
    const uint8_t* wrow = grp + rq.scale_bytes + l * 4;
    const float s = load_float(rq.sdtype, grp, l), b = load_float(rq.sdtype, grp + kPR * ssize, l);
    for (; k < gend; ++k) {
      const int64_t kk = k - g * rq.group, j = kk >> vshift, w = kk & ((1 << vshift) - 1);
      const uint32_t q = (wrow[j * 64 + (w & 3)] >> ((w >> 2) * rq.bits)) & mask;
      out[k - k0] = s * float(q) + b;
    }
  }
}

void repacked_forward_f32(ThreadPool& pool, const RepackedQuant& rq, const float* x, int64_t M, float* y,
                          const float* bias) {
  const int64_t K = rq.K;
  pool.parallel_for(rq.N, 16, [&](int64_t n0, int64_t n1) {
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t n = n0; n < n1; ++n) {
      repacked_dequantize_range(rq, n, 0, K, row.data());
      for (int64_t m = 0; m < M; ++m) {
        float lanes[16] = {};
        const float* xm = x + m * K;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16)
          for (int i = 0; i < 16; ++i) lanes[i] += row[size_t(k + i)] * xm[k + i];
        float s = 0.f;
        for (; k < K; ++k) s += row[size_t(k)] * xm[k];
        for (float v : lanes) s += v;
        y[m * rq.N + n] = s + (bias ? bias[n] : 0.f);
      }
    }
  });
}

#ifdef VLM_X86_KERNELS
namespace {

// Work below this many weight bytes runs on the calling thread: a fork-join costs more.
constexpr int64_t kMinParallelBytes = 256 << 10;  // k/v projections (220 KB at 4 bits) stay serial
// GEMM: activation rows per pass over the weights, sized so their int8 copy stays in L2.
constexpr int64_t kGemmRowBytes = 256 << 10;

// Software prefetch (to L1) this far ahead in each panel's stream: a single-thread decode step
// takes ~41-46 ms of CPU with it and ~71 ms without (1024: ~45-50, 4096-8192 or to L2: slower).
constexpr int64_t kPrefetch = 2048;
// Rows m0.. of the quantized activations.
struct XView {
  const int8_t *hi, *lo;  // [M, K]
  const float* scale;     // [M, groups]
  const float* sum;       // [M, groups]
  int64_t K, groups;
  // GEMM: the same 4 rows interleaved as [K/4][row][hi, lo] of 4-byte words, so that one pointer
  // and constant offsets reach every broadcast (with 8 row pointers the kernel ran out of
  // general registers and spilled them inside its inner loop).
  const int8_t* interleaved = nullptr;
};
constexpr int kInterleavedRows = 4;

// Rows [4b, 4b + 4) of qx for b in [b0, b1) into XView::interleaved's layout at out.
VLM_AVX512 void interleave_rows(const QuantizedX& qx, int64_t K, int64_t b0, int64_t b1, int8_t* out) {
  for (int64_t b = b0; b < b1; ++b) {
    int32_t* dst = reinterpret_cast<int32_t*>(out + b * kInterleavedRows * K * 2);
    for (int64_t q = 0; q < K / 4; ++q)
      for (int m = 0; m < kInterleavedRows; ++m) {
        const int64_t src = (b * kInterleavedRows + m) * K + 4 * q;
        std::memcpy(dst++, qx.hi.data() + src, 4);
        std::memcpy(dst++, qx.lo.data() + src, 4);
      }
  }
}

// 16 scales or biases of scale dtype SD (0 f32, 1 bf16, 2 f16) at 64-byte-aligned p.
template <int SD>
VLM_AVX512 inline __m512 load_scales16(const uint8_t* p) {
  if constexpr (SD == 0) return _mm512_load_ps(p);
  const __m256i h = _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
  if constexpr (SD == 1) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

// y[m, 16·p0 ..) for MB activation rows and R panels from p0 over all of K. Each weight vector
// meets both activation planes (hi, lo: matmul_int8.h) in their own accumulators; A independent
// accumulators per output vector and plane hide vpdpbusd latency when MB·R alone is too few.
template <int BITS, int SD, int MB, int R, bool kInterleaved = false>
VLM_AVX512_VNNI void panels_kernel(const RepackedQuant& rq, int64_t p0, const XView& x, float* y, int64_t ldy,
                                   const float* bias) {
  constexpr int P = 8 / BITS, V = 32 / BITS;
  constexpr int A = MB * R >= 4 ? 1 : 4 / (MB * R);
  constexpr int JU = A > P ? A / P : 1;  // blocks per step: accumulator indices stay compile-time
  // 4 bits with even A: plane 1 always lands in odd accumulators, so it is used unshifted (16·q)
  // and the fold shifts the plane-0 sums left by 4 instead, one op less per block; the fold's
  // scale then carries the 1/16 (exact). The int32 fold 128·Σq·hi + Σq·lo of a group stays below
  // 2^31 for groups up to kMaxGroup: |Σ q·v| <= 512·255·16320 = 2.13e9 (16·q <= 240 for 4 bits).
  constexpr bool kHighInPlace = BITS == 4 && A % 2 == 0;
  const __m512i high_mask = _mm512_set1_epi8(char(0xF0));
  const float fold = kHighInPlace ? 1.f / 16 : 1.f;
  const int64_t nb = rq.group / V, ssize = SD == 0 ? 4 : 2;
  const __m512i mask = _mm512_set1_epi8(char((1 << BITS) - 1));
  const uint8_t* pan[R];
  __m512 tot[R][MB];
  for (int r = 0; r < R; ++r) {
    pan[r] = rq.panel(p0 + r);
    for (int m = 0; m < MB; ++m) tot[r][m] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < rq.groups; ++g) {
    __m512i acc[R][MB][A], acc_lo[R][MB][A];
    for (int r = 0; r < R; ++r)
      for (int m = 0; m < MB; ++m)
        for (int a = 0; a < A; ++a) acc[r][m][a] = acc_lo[r][m][a] = _mm512_setzero_si512();
    const int8_t* xg = x.hi + g * rq.group;
    const int8_t* xl = x.lo + g * rq.group;
    const int64_t goff = g * rq.group_stride;
    for (int64_t j = 0; j < nb; j += JU)
      for (int u = 0; u < JU; ++u)
        for (int r = 0; r < R; ++r) {
          const uint8_t* wp = pan[r] + goff + rq.scale_bytes + (j + u) * 64;
          _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetch), _MM_HINT_T0);
          const __m512i w = _mm512_load_si512(wp);
          for (int pl = 0; pl < P; ++pl) {
            __m512i q = w;
            if constexpr (kHighInPlace) {
              q = _mm512_and_si512(w, pl == 0 ? mask : high_mask);
            } else if constexpr (BITS != 8) {
              q = _mm512_and_si512(pl == 0 ? w : _mm512_srli_epi16(w, pl * BITS), mask);
            }
            const int64_t k = (j + u) * V + pl * 4;
            for (int m = 0; m < MB; ++m) {
              if constexpr (kInterleaved) {
                static_assert(MB == kInterleavedRows);
                const int8_t* xq = x.interleaved + (g * rq.group + k) * 2 * MB + m * 8;
                dpbusd_bcast(acc[r][m][(u * P + pl) % A], q, xq);
                dpbusd_bcast(acc_lo[r][m][(u * P + pl) % A], q, xq + 4);
              } else {
                dpbusd_bcast(acc[r][m][(u * P + pl) % A], q, xg + m * x.K + k);
                dpbusd_bcast(acc_lo[r][m][(u * P + pl) % A], q, xl + m * x.K + k);
              }
            }
          }
        }
    for (int r = 0; r < R; ++r) {
      const __m512 s = load_scales16<SD>(pan[r] + goff), b = load_scales16<SD>(pan[r] + goff + kPR * ssize);
      for (int m = 0; m < MB; ++m) {
        __m512i sum = _mm512_setzero_si512();
        for (int a = 0; a < A; ++a) {
          const __m512i v = _mm512_add_epi32(_mm512_slli_epi32(acc[r][m][a], 7), acc_lo[r][m][a]);
          sum = _mm512_add_epi32(sum, kHighInPlace && a % 2 == 0 ? _mm512_slli_epi32(v, 4) : v);
        }
        const __m512 sxs = _mm512_mul_ps(s, _mm512_set1_ps(x.scale[m * x.groups + g] * fold));
        tot[r][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), sxs, tot[r][m]);
        tot[r][m] = _mm512_fmadd_ps(b, _mm512_set1_ps(x.sum[m * x.groups + g]), tot[r][m]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const int64_t n = (p0 + r) * kPR;
    const __mmask16 k = tail16(rq.N - n);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(k, bias + n) : _mm512_setzero_ps();
    for (int m = 0; m < MB; ++m) _mm512_mask_storeu_ps(y + m * ldy + n, k, _mm512_add_ps(tot[r][m], bv));
  }
}

using PanelsFn = void (*)(const RepackedQuant&, int64_t, const XView&, float*, int64_t, const float*);

template <int MB, int R, bool kInterleaved = false>
PanelsFn pick(const RepackedQuant& rq) {
  const int sd = rq.sdtype == DType::F32 ? 0 : rq.sdtype == DType::BF16 ? 1 : 2;
  auto by_sd = [sd](auto bits_tag) -> PanelsFn {
    constexpr int B = decltype(bits_tag)::value;
    return sd == 0   ? panels_kernel<B, 0, MB, R, kInterleaved>
           : sd == 1 ? panels_kernel<B, 1, MB, R, kInterleaved>
                     : panels_kernel<B, 2, MB, R, kInterleaved>;
  };
  return rq.bits == 2   ? by_sd(std::integral_constant<int, 2>())
         : rq.bits == 4 ? by_sd(std::integral_constant<int, 4>())
                        : by_sd(std::integral_constant<int, 8>());
}

// Kernel for MB rows (1-6) and R panels (R = 2 only up to MB = 4: registers).
PanelsFn pick_kernel(const RepackedQuant& rq, int MB, int R) {
  if (R == 2) {
    switch (MB) {
      case 1: return pick<1, 2>(rq);
      case 2: return pick<2, 2>(rq);
      case 3: return pick<3, 2>(rq);
      default: return pick<4, 2>(rq);
    }
  }
  switch (MB) {
    case 1: return pick<1, 1>(rq);
    case 2: return pick<2, 1>(rq);
    case 3: return pick<3, 1>(rq);
    case 4: return pick<4, 1>(rq);
    case 5: return pick<5, 1>(rq);
    default: return pick<6, 1>(rq);
  }
}

}  // namespace

void repacked_forward_int8(ThreadPool& pool, const RepackedQuant& rq, const float* x, int64_t M, float* y,
                           const float* bias) {
  if (!avx512_vnni_enabled()) return repacked_forward_f32(pool, rq, x, M, y, bias);
  const int64_t K = rq.K, groups = rq.groups;
  thread_local QuantizedX qx_buffer;
  QuantizedX& qx = qx_buffer;  // the caller's buffer: lambdas on workers must not name the thread_local
  qx.resize(M, K, groups);
  pool.parallel_for(M, 16, [&](int64_t m0, int64_t m1) { quantize_rows(x, m0, m1, K, rq.group, qx); });
  // GEMM: whole blocks of 4 rows also interleaved (XView::interleaved); a last partial block
  // reads the row-major planes.
  const int64_t blocks = M > 6 ? M / kInterleavedRows : 0;
  thread_local std::vector<int8_t> interleaved_buffer;
  std::vector<int8_t>& interleaved = interleaved_buffer;
  if (blocks > 0) {
    interleaved.resize(std::max(interleaved.size(), size_t(blocks * kInterleavedRows * K * 2)));
    pool.parallel_for(blocks, 4, [&](int64_t b0, int64_t b1) { interleave_rows(qx, K, b0, b1, interleaved.data()); });
  }
  auto view = [&](int64_t m) {
    return XView{qx.hi.data() + m * K,
                 qx.lo.data() + m * K,
                 qx.scale.data() + m * groups,
                 qx.sum.data() + m * groups,
                 K,
                 groups,
                 m % kInterleavedRows == 0 && m + kInterleavedRows <= blocks * kInterleavedRows
                     ? interleaved.data() + m * K * 2
                     : nullptr};
  };
  // Units of two panels; a trailing odd panel is a unit of one.
  const int64_t units = (rq.panels + 1) / 2;
  const int mb_max = M <= 6 ? int(M) : 4;
  const int64_t mc = M <= 6 ? M : std::max<int64_t>(4, kGemmRowBytes / K / 4 * 4);
  auto work = [&](int64_t u0, int64_t u1) {
    for (int64_t mc0 = 0; mc0 < M; mc0 += mc) {
      const int64_t mc1 = std::min(M, mc0 + mc);
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t p0 = 2 * u;
        const int R = p0 + 1 < rq.panels ? 2 : 1;
        for (int64_t m = mc0; m < mc1;) {
          const int mb = int(std::min<int64_t>(mc1 - m, mb_max));
          const XView xv = view(m);
          if (mb == kInterleavedRows && xv.interleaved) {
            (R == 2 ? pick<kInterleavedRows, 2, true>(rq) : pick<kInterleavedRows, 1, true>(rq))(
                rq, p0, xv, y + m * rq.N, rq.N, bias);
          } else if (R == 2 && mb > 4) {  // M = 5, 6: one panel at a time
            for (int64_t pp = p0; pp < p0 + 2; ++pp) pick_kernel(rq, mb, 1)(rq, pp, xv, y + m * rq.N, rq.N, bias);
          } else {
            pick_kernel(rq, mb, R)(rq, p0, xv, y + m * rq.N, rq.N, bias);
          }
          m += mb;
        }
      }
    }
  };
  if (int64_t(rq.bytes()) * std::max<int64_t>(1, M) < kMinParallelBytes || pool.size() == 1) return work(0, units);
  // One contiguous range of units per thread: each streams its own part of the weights.
  const int64_t grain = M <= 6 ? (units + pool.size() - 1) / pool.size() : 1;
  pool.parallel_for(units, grain, work);
}

#else

void repacked_forward_int8(ThreadPool& pool, const RepackedQuant& rq, const float* x, int64_t M, float* y,
                           const float* bias) {
  repacked_forward_f32(pool, rq, x, M, y, bias);
}

#endif

}  // namespace vlm::matmul_detail
