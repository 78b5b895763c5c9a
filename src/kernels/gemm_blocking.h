// The blocking shared by the float32 GEMM (matmul_gemm.cpp) and the bf16 one
// (matmul_gemm_bf16.cpp); they differ only in their element types and kernels. Not part of the
// public API.
//
// Activations are packed, up to `max_rows` rows at a time, into MR-row tiles per K slice, so the
// tile kernel reads them as one contiguous stream (reading MR rows K apart in place missed cache
// and TLB at every tile: the float32 GEMM ran at about half the FMA roof). Each task owns one
// NR-feature panel (and, when there are too few panels for the threads, a range of the tiles):
// per K slice it fills the panel and runs the register tile over every packed tile of its range.
// Partial sums accumulate in a contiguous per-task buffer; the last slice writes whole tiles
// straight to y and the others are copied out. Every output is bias (or 0) plus its K products in
// slice order, whatever the split: results do not depend on the thread count.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"

namespace vlm::matmul_detail {

// A 64-byte aligned buffer that keeps its capacity across calls (grows only).
template <class T>
T* scratch(std::vector<T>& v, size_t n) {
  if (v.size() < n + 64 / sizeof(T)) v.resize(n + 64 / sizeof(T));
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
}

// Sizes in "depth" units: one packed activation element (a float, or a pair of bf16).
struct GemmBlocking {
  int64_t depth;     // K in depth units
  int64_t slice;     // depth units per K slice
  int64_t NR;        // output features per panel (<= 64)
  int MR;            // activation rows per tile
  int64_t max_rows;  // activation rows packed at a time
};

// y[M, N] = x · Wᵀ (+ bias) with A the packed activation element and W the panel element.
//   pack(m0, tiles, t, packed): tile t of rows [m0, m0 + tiles·MR), every slice, into the layout
//     above (slice at depth k0 of tile t starts at packed + k0·tiles·MR + t·kc·MR).
//   fill(n0, nr, k0, kc, panel): the weights' panel [kc][NR] for features [n0, n0 + nr).
//   tile(accumulate, a, panel, kc, src, bias, dst, ldd): dst[MR, NR] = (src or bias or 0) + a·panel,
//     src rows NR apart.
template <class A, class W, class Pack, class Fill, class Tile>
void blocked_gemm(ThreadPool& pool, const GemmBlocking& b, int64_t M, int64_t N, float* y, const float* bias,
                  const Pack& pack, const Fill& fill, const Tile& tile) {
  const int64_t NR = b.NR, MR = b.MR;
  if (NR > 64) fail("blocked_gemm: panels wider than 64 features");
  const int64_t panels = (N + NR - 1) / NR;
  thread_local std::vector<A> packed_buf;  // the calling thread's; workers only read it
  A* packed = scratch(packed_buf, size_t((std::min(M, b.max_rows) + MR - 1) / MR * MR * b.depth));
  for (int64_t m0 = 0; m0 < M; m0 += b.max_rows) {
    const int64_t mb = std::min(b.max_rows, M - m0), tiles = (mb + MR - 1) / MR;
    pool.run(tiles, [&](int64_t t) { pack(m0, tiles, t, packed); });
    // Tasks: panels × tile ranges. Whole tile ranges fill each panel once; split them only when
    // there are too few panels to keep every thread busy and balanced.
    int64_t splits = 1;
    while (panels * splits < 8 * pool.size() && tiles / (splits * 2) >= 8) splits *= 2;
    const int64_t tiles_per_task = (tiles + splits - 1) / splits;
    auto whole = [&](int64_t t, int64_t nr) { return nr == NR && (t + 1) * MR <= mb; };
    pool.run(panels * splits, [&](int64_t task) {
      const int64_t pi = task / splits, t0 = task % splits * tiles_per_task;
      const int64_t t1 = std::min(tiles, t0 + tiles_per_task);
      const int64_t n0 = pi * NR, nr = std::min(NR, N - n0);
      if (t0 >= t1) return;
      thread_local std::vector<W> panel_buf;
      thread_local std::vector<float> out_buf;
      W* panel = scratch(panel_buf, size_t(b.slice * NR));
      float* out = scratch(out_buf, size_t((t1 - t0) * MR * NR));
      alignas(64) float btile[64];
      const float* bias_p = nullptr;
      if (bias) {
        std::fill(btile, btile + NR, 0.f);
        std::copy(bias + n0, bias + n0 + nr, btile);
        bias_p = btile;
      }
      for (int64_t k0 = 0; k0 < b.depth; k0 += b.slice) {
        const int64_t kc = std::min(b.slice, b.depth - k0);
        fill(n0, nr, k0, kc, panel);
        const bool last = k0 + kc == b.depth;
        const A* a = packed + k0 * tiles * MR + t0 * kc * MR;
        for (int64_t t = t0; t < t1; ++t, a += kc * MR) {
          float* partial = out + (t - t0) * MR * NR;
          if (last && whole(t, nr))
            tile(k0 > 0, a, panel, kc, partial, bias_p, y + (m0 + t * MR) * N + n0, N);
          else
            tile(k0 > 0, a, panel, kc, partial, bias_p, partial, NR);
        }
      }
      for (int64_t t = t0; t < t1; ++t) {
        if (whole(t, nr)) continue;
        for (int64_t i = t * MR; i < std::min(mb, (t + 1) * MR); ++i)
          std::copy(out + (i - t0 * MR) * NR, out + (i - t0 * MR) * NR + nr, y + (m0 + i) * N + n0);
      }
    });
  }
}

}  // namespace vlm::matmul_detail
