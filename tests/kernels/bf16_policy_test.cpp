// The bf16 instruction policy (kernels/matmul_x86.h). The tests of the bf16 GEMM, GEMV and
// attention run its AVX512F emulation on CPUs without AVX512-BF16, so the emulation itself is
// checked here against scalar references (f32_to_bf16, fmaf) and, where the CPU has them,
// against the instructions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/matmul_x86.h"

namespace vlm::matmul_detail {
namespace {

#ifdef VLM_X86_KERNELS

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Rounding ties both ways, the largest float (rounds to infinity), infinities, NaNs (quiet and
// signalling), denormals (a tie among them too), zeros, then random bit patterns: a multiple of 32.
std::vector<float> probes(bool finite_normal_only) {
  const uint32_t special[] = {0x3F808000u, 0x3F818000u, 0x3F807FFFu, 0xBF818000u, 0x7F7FFFFFu, 0x7F800000u,
                              0xFF800000u, 0x7FC00000u, 0x7F800001u, 0xFFA00001u, 0x00000001u, 0x00018000u,
                              0x80008000u, 0x00000000u, 0x80000000u, 0x3F800000u};
  std::vector<float> v;
  auto keep = [&](uint32_t b) {
    const float f = from_bits(b);
    if (!finite_normal_only || (std::isnormal(f) && std::isnormal(from_bits(b & 0xFFFF0000u)))) v.push_back(f);
  };
  for (uint32_t b : special) keep(b);
  std::mt19937 rng(3);
  while (v.size() < 4096) keep(rng());
  v.resize(v.size() / 32 * 32);
  return v;
}

template <class Isa>
VLM_AVX512_BF16 void round_all(const std::vector<float>& x, std::vector<uint16_t>& out) {
  out.resize(x.size());
  for (size_t i = 0; i < x.size(); i += 32)
    _mm512_storeu_si512(out.data() + i, Isa::round(_mm512_loadu_ps(x.data() + i), _mm512_loadu_ps(x.data() + i + 16)));
}

// acc + x·w per lane for bf16 pairs x, w (words of two bf16, the low one even).
template <class Isa>
VLM_AVX512_BF16 void dot_all(const std::vector<float>& acc, const std::vector<uint32_t>& x,
                             const std::vector<uint32_t>& w, std::vector<float>& out) {
  out.resize(acc.size());
  for (size_t i = 0; i < acc.size(); i += 16)
    _mm512_storeu_ps(out.data() + i, Isa::dot(_mm512_loadu_ps(acc.data() + i), _mm512_loadu_si512(x.data() + i),
                                              _mm512_loadu_si512(w.data() + i)));
}

bool cpu_has_bf16() {
  return __builtin_cpu_supports("avx512bf16") && avx512_enabled();
}

TEST(Bf16Policy, EmulatedRoundingIsF32ToBf16InOrder) {
  if (!avx512_enabled()) GTEST_SKIP() << "no AVX-512";
  const std::vector<float> x = probes(false);
  std::vector<uint16_t> got;
  round_all<EmulatedBf16>(x, got);
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(got[i], f32_to_bf16(x[i])) << "value " << i << " bits 0x" << std::hex << to_bits(x[i]);
}

// Each lane adds the odd pair's product, then the even one's, rounding after each addition
// (Intel SDM, VDPBF16PS); bf16 products are exact in float, so each step is one fmaf.
TEST(Bf16Policy, EmulatedDotIsTwoRoundedAdditions) {
  if (!avx512_enabled()) GTEST_SKIP() << "no AVX-512";
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-4.f, 4.f);
  const size_t n = 4096;
  std::vector<float> acc(n);
  std::vector<uint32_t> x(n), w(n);
  for (size_t i = 0; i < n; ++i) {
    acc[i] = u(rng);
    x[i] = uint32_t(f32_to_bf16(u(rng))) | uint32_t(f32_to_bf16(u(rng))) << 16;
    w[i] = uint32_t(f32_to_bf16(u(rng))) | uint32_t(f32_to_bf16(u(rng))) << 16;
  }
  std::vector<float> got;
  dot_all<EmulatedBf16>(acc, x, w, got);
  for (size_t i = 0; i < n; ++i) {
    const float odd = std::fmaf(bf16_to_f32(uint16_t(x[i] >> 16)), bf16_to_f32(uint16_t(w[i] >> 16)), acc[i]);
    const float want = std::fmaf(bf16_to_f32(uint16_t(x[i])), bf16_to_f32(uint16_t(w[i])), odd);
    ASSERT_EQ(to_bits(got[i]), to_bits(want)) << "lane " << i;
  }
}

// Against the instructions, on normal numbers (the instructions flush denormals; NaN payloads are
// not compared): rounding bit for bit; the dot product within one rounding per addition, since
// the SDM's order of the two additions is not something every implementation need share.
TEST(Bf16Policy, EmulationMatchesTheInstructions) {
  if (!cpu_has_bf16()) GTEST_SKIP() << "CPU has no AVX512_BF16";
  const std::vector<float> x = probes(true);
  std::vector<uint16_t> native, emulated;
  round_all<NativeBf16>(x, native);
  round_all<EmulatedBf16>(x, emulated);
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(native[i], emulated[i]) << "value " << i << " bits 0x" << std::hex << to_bits(x[i]);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.5f, 4.f);
  const size_t n = 4096;
  std::vector<float> acc(n);
  std::vector<uint32_t> a(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    acc[i] = u(rng);
    a[i] = uint32_t(f32_to_bf16(u(rng))) | uint32_t(f32_to_bf16(-u(rng))) << 16;
    b[i] = uint32_t(f32_to_bf16(u(rng))) | uint32_t(f32_to_bf16(u(rng))) << 16;
  }
  std::vector<float> got_native, got_emulated;
  dot_all<NativeBf16>(acc, a, b, got_native);
  dot_all<EmulatedBf16>(acc, a, b, got_emulated);
  for (size_t i = 0; i < n; ++i) {
    const double p0 = double(bf16_to_f32(uint16_t(a[i]))) * bf16_to_f32(uint16_t(b[i]));
    const double p1 = double(bf16_to_f32(uint16_t(a[i] >> 16))) * bf16_to_f32(uint16_t(b[i] >> 16));
    const double scale = std::fabs(acc[i]) + std::fabs(p0) + std::fabs(p1);
    ASSERT_LE(std::fabs(double(got_native[i]) - got_emulated[i]), 2 * std::ldexp(scale, -24)) << "lane " << i;
  }
}

#endif

}  // namespace
}  // namespace vlm::matmul_detail
