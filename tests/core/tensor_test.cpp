#include "core/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

namespace vlm {
namespace {

Tensor iota(Shape shape) {
  Tensor t = Tensor::empty(DType::F32, shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(i);
  return t;
}

TEST(Tensor, EmptyIsContiguousAndAligned) {
  Tensor t = Tensor::empty(DType::BF16, {3, 5, 7});
  EXPECT_EQ(t.numel(), 105);
  EXPECT_EQ(t.nbytes(), 210u);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  EXPECT_EQ(t.strides(), (Shape{35, 7, 1}));
}

TEST(Tensor, SliceSharesStorage) {
  Tensor t = iota({4, 6});
  Tensor s = t.slice(1, 2, 5);
  EXPECT_EQ(s.shape(), (Shape{4, 3}));
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.to_floats(), (std::vector<float>{2, 3, 4, 8, 9, 10, 14, 15, 16, 20, 21, 22}));
  t.data<float>()[2] = 100;  // visible through the view
  EXPECT_EQ(s.to_floats()[0], 100);
}

TEST(Tensor, SelectTransposePermute) {
  Tensor t = iota({2, 3, 4});
  EXPECT_EQ(t.select(0, 1).to_floats()[0], 12);
  Tensor tr = t.transpose(0, 2);  // [4, 3, 2]
  EXPECT_EQ(tr.shape(), (Shape{4, 3, 2}));
  auto v = tr.contiguous().to_floats();
  EXPECT_EQ(v[1], 12);  // [0,0,1] = t[1,0,0]
  EXPECT_EQ(v[2], 4);   // [0,1,0] = t[0,1,0]
  Tensor p = t.permute({1, 2, 0});
  EXPECT_EQ(p.shape(), (Shape{3, 4, 2}));
  EXPECT_EQ(p.contiguous().to_floats()[1], 12);
}

TEST(Tensor, ReshapeInfersAndCopiesWhenStrided) {
  Tensor t = iota({2, 6});
  EXPECT_EQ(t.reshape({3, -1}).shape(), (Shape{3, 4}));
  Tensor tr = t.transpose(0, 1).reshape({12});
  EXPECT_EQ(tr.to_floats()[1], 6);
  EXPECT_THROW(t.reshape({5, -1}), Error);
  EXPECT_THROW(t.reshape({-1, -1}), Error);
}

TEST(Tensor, OutOfRangeViewsThrow) {
  Tensor t = iota({2, 3});
  EXPECT_THROW(t.slice(1, 2, 4), Error);
  EXPECT_THROW(t.slice(3, 0, 1), Error);
  EXPECT_THROW(t.permute({0, 0}), Error);
  EXPECT_THROW(Tensor::empty(DType::F32, {-1}), Error);
}

TEST(Tensor, DtypeConversionRoundTrips) {
  std::vector<float> v = {0.f, 1.f, -2.5f, 65504.f, 1e-5f, 3.14159f};
  Tensor f = Tensor::from_floats(v, {6});
  auto back16 = f.to(DType::F16).to_floats();
  auto backbf = f.to(DType::BF16).to_floats();
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_NEAR(back16[i], v[i], std::abs(v[i]) * 1e-3 + 1e-7);
    EXPECT_NEAR(backbf[i], v[i], std::abs(v[i]) * 8e-3 + 1e-30);
  }
  EXPECT_EQ(f.to(DType::I64).to_ints()[2], -2);
}

TEST(DType, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly half-way between two bf16 values: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16MatchesIeeeIncludingSubnormals) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(f32_to_f16(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  for (uint32_t h = 0; h < 0x7c00; ++h) EXPECT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h) << h;
  EXPECT_EQ(f16_to_f32(0x0001), 5.960464477539063e-08f);
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
}

}  // namespace
}  // namespace vlm
