#include "nn/linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "nn/kv_cache.h"
#include "nn/rope.h"

namespace vlm::nn {
namespace {

namespace fs = std::filesystem;
const std::string kShared = VLM_SHARED_DIR;

// The 4-bit mlx directory holds the same weights as the bf16 one, quantized: dequantized rows
// must lie within one quantization step (|scale|) of the originals.
TEST(Linear, QuantizedFixtureMatchesBf16WithinOneStep) {
  std::string bf16_dir = kShared + "/fixtures/qwen2_vl/tiny-bf16";
  std::string q_dir = kShared + "/fixtures/qwen2_vl/tiny-mlx-4bit";
  if (!fs::exists(bf16_dir)) GTEST_SKIP() << "shared fixtures absent";
  Checkpoint ref = Checkpoint::open(bf16_dir);
  Checkpoint q = Checkpoint::open(q_dir);
  struct Case {
    std::string hf, mlx;
    int64_t out, in;
  };
  for (const Case& c : {Case{"model.layers.0.mlp.up_proj", "language_model.model.layers.0.mlp.up_proj", 128, 64},
                        Case{"model.layers.1.mlp.down_proj", "language_model.model.layers.1.mlp.down_proj", 64, 128},
                        Case{"model.embed_tokens", "language_model.model.embed_tokens", 151936, 64}}) {
    MatMulWeight a = load_matmul_weight(ref, c.hf, c.out, c.in);
    MatMulWeight b = load_matmul_weight(q, c.mlx, c.out, c.in);
    EXPECT_FALSE(a.is_quantized());
    ASSERT_TRUE(b.is_quantized());
    EXPECT_EQ(b.bits(), 4);
    EXPECT_EQ(b.group_size(), 64);
    Tensor scales = q.get(c.mlx + ".scales").to(DType::F32);
    std::vector<float> ra(size_t(c.in)), rb(size_t(c.in));
    for (int64_t r = 0; r < std::min<int64_t>(c.out, 300); ++r) {
      a.dequantize_row(r, ra.data());
      b.dequantize_row(r, rb.data());
      for (int64_t k = 0; k < c.in; ++k) {
        float step = std::abs(scales.data<float>()[r * (c.in / 64) + k / 64]);
        ASSERT_LE(std::abs(ra[size_t(k)] - rb[size_t(k)]), step * 1.0001f + 1e-6f) << c.mlx << " r=" << r << " k=" << k;
      }
    }
  }
}

TEST(Linear, ShapeMismatchNamesTensor) {
  std::string dir = kShared + "/fixtures/qwen2_vl/tiny-mlx-4bit";
  if (!fs::exists(dir)) GTEST_SKIP() << "shared fixtures absent";
  Checkpoint q = Checkpoint::open(dir);
  try {
    Linear::load(q, "language_model.model.layers.0.mlp.up_proj", 64, 256, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("language_model.model.layers.0.mlp.up_proj"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Linear::load(q, "language_model.model.layers.0.mlp.nope", 64, 128, false), Error);
}

TEST(Linear, ForwardAddsBias) {
  Tensor w = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3});
  Linear l = Linear::from_weight(MatMulWeight::dense(w, "w"), {10, 20});
  auto y = l.forward(Compute::make(1), std::vector<float>{1, 1, 1, 0, 1, 0}, 2);
  EXPECT_EQ(y, (std::vector<float>{16, 35, 12, 25}));
}

TEST(Embedding, LookupRejectsOutOfRangeIds) {
  Tensor w = Tensor::from_floats({1, 2, 3, 4}, {2, 2});
  MatMulWeight m = MatMulWeight::dense(w, "emb");
  std::vector<float> out(2);
  m.dequantize_row(1, out.data());
  EXPECT_EQ(out, (std::vector<float>{3, 4}));
  EXPECT_THROW(m.dequantize_row(2, out.data()), Error);
}

TEST(KVCache, GrowsAndKeepsRows) {
  KVCache c(2, 1, 2, 1);
  for (int step = 0; step < 10; ++step) {
    float k[2] = {float(step), 0}, v[2] = {0, float(step)};
    for (int l = 0; l < 2; ++l) c.append(l, k, v, 1);
    c.advance(1);
  }
  EXPECT_EQ(c.length(), 10);
  EXPECT_GE(c.capacity(), 10);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(c.keys(1)[i * 2], float(i));
    EXPECT_EQ(c.values(0)[i * 2 + 1], float(i));
  }
  c.truncate(3);
  EXPECT_EQ(c.length(), 3);
}

TEST(KVCache, WindowKeepsSinksAndNewestRows) {
  KVCache c(1, 1, 1, 4);
  c.set_window(8, 2);
  int64_t evicted = 0;
  for (int step = 0; step < 20; ++step) {
    evicted += c.make_room(1);
    float k = float(step), v = -float(step);
    c.append(0, &k, &v, 1);
    c.advance(1);
    ASSERT_LE(c.length(), 8);
  }
  EXPECT_EQ(c.length() + evicted, 20);
  // The first two rows stay; the rest are the newest rows, in order.
  EXPECT_EQ(c.keys(0)[0], 0.f);
  EXPECT_EQ(c.keys(0)[1], 1.f);
  for (int64_t i = 2; i < c.length(); ++i) EXPECT_EQ(c.keys(0)[i], float(20 - c.length() + i));
  EXPECT_EQ(c.values(0)[c.length() - 1], -19.f);
  EXPECT_THROW(c.make_room(7), Error);  // a step larger than the window minus the kept rows
  EXPECT_THROW(c.set_window(4, 4), Error);
}

// A sliding-window layer keeps the rows its window can still reach (and never more than about two
// windows plus a step); a global layer keeps everything; both agree on the rows they hold.
TEST(KVCache, SlidingLayerKeepsOnlyItsWindow) {
  KVCache c(2, 1, 1, 2);
  c.set_layer_window(1, 4);
  for (int step = 0; step < 30; ++step) {
    const int n = step == 5 ? 6 : 1;  // one prefill-sized chunk among single steps
    std::vector<float> k(static_cast<size_t>(n)), v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) k[size_t(i)] = float(c.length() + i), v[size_t(i)] = -k[size_t(i)];
    for (int l = 0; l < 2; ++l) c.append(l, k.data(), v.data(), n);
    c.advance(n);
    EXPECT_EQ(c.first_row(0), 0);
    EXPECT_LE(c.first_row(1), std::max<int64_t>(0, c.length() - 3));  // the last window - 1 rows stay
    EXPECT_LT(c.length() - c.first_row(1), 2 * 4);
    for (int64_t r = c.first_row(1); r < c.length(); ++r) {
      EXPECT_EQ(c.keys(1)[r - c.first_row(1)], float(r));
      EXPECT_EQ(c.values(1)[r - c.first_row(1)], -float(r));
      EXPECT_EQ(c.keys(0)[r], float(r));
    }
  }
  EXPECT_GT(c.first_row(1), 0);
  EXPECT_THROW(c.truncate(c.first_row(1)), Error);  // its window would need rows it dropped
  const int64_t back = c.length() - 1;
  c.truncate(back);
  EXPECT_EQ(c.length(), back);
}

// Evicting rows for a KV window moves a sliding layer's rows consistently with the global ones.
TEST(KVCache, WindowEvictionWithSlidingLayers) {
  KVCache c(2, 1, 1, 2);
  c.set_layer_window(1, 3);
  c.set_window(10, 2);
  for (int step = 0; step < 40; ++step) {
    c.make_room(1);
    const float k = float(step), v = -k;
    for (int l = 0; l < 2; ++l) c.append(l, &k, &v, 1);
    c.advance(1);
    ASSERT_GE(c.first_row(1), 0);
    for (int64_t r = std::max<int64_t>(c.first_row(1), 2); r < c.length(); ++r)
      EXPECT_EQ(c.keys(1)[r - c.first_row(1)], c.keys(0)[r]) << "step " << step << " row " << r;
  }
}

TEST(Rope, MropeWithEqualAxesIsPlainRope) {
  auto inv = rope_inv_freq(16, 1e6);
  std::vector<int64_t> pos = {0, 1, 5, 40, 1000};
  RopeTables a = rope_tables(pos, inv);
  RopeTables b = mrope_tables({pos, pos, pos}, inv, {2, 3, 3});
  EXPECT_EQ(a.cos, b.cos);
  EXPECT_EQ(a.sin, b.sin);
  EXPECT_THROW(mrope_tables({pos, pos, pos}, inv, {2, 3, 4}), Error);
}

TEST(Rope, MropeTakesSectionsFromAxes) {
  auto inv = rope_inv_freq(16, 10000);
  RopeTables t =
      mrope_tables({std::vector<int64_t>{1}, std::vector<int64_t>{2}, std::vector<int64_t>{3}}, inv, {2, 3, 3});
  // Frequencies 0-1 from T (pos 1), 2-4 from H (pos 2), 5-7 from W (pos 3); second half mirrors.
  for (int j = 0; j < 8; ++j) {
    int pos = j < 2 ? 1 : j < 5 ? 2 : 3;
    EXPECT_FLOAT_EQ(t.cos[size_t(j)], std::cos(float(pos) * inv[size_t(j)]));
    EXPECT_FLOAT_EQ(t.sin[size_t(j + 8)], std::sin(float(pos) * inv[size_t(j)]));
  }
}

}  // namespace
}  // namespace vlm::nn

#include <random>

#include "nn/quantize.h"

namespace vlm::nn {
namespace {

// MLX anchors each group on its larger-magnitude end and then snaps the scale so that end is exactly
// representable; the grid can then stop short of the other end by less than one step, so values
// are within half a step except near that end, and always within one step.
TEST(MlxQuantize, RoundTripWithinOneStepForEveryBitWidth) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int group : {32, 64, 128}) {
      const int64_t rows = 5, cols = 256;
      std::vector<float> w(size_t(rows * cols));
      for (auto& v : w) v = dist(rng);
      MlxQuantized q = mlx_quantize(w.data(), rows, cols, bits, group, DType::F32);
      MatMulWeight m = MatMulWeight::quantized(q.packed, q.scales, q.biases, bits, group, "test");
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        m.dequantize_row(r, row.data());
        for (int64_t k = 0; k < cols; ++k) {
          float step = std::abs(q.scales.data<float>()[r * (cols / group) + k / group]);
          ASSERT_LE(std::abs(row[size_t(k)] - w[size_t(r * cols + k)]), step + 1e-5f)
              << "bits=" << bits << " group=" << group;
        }
      }
    }
  }
}

TEST(MlxQuantize, ReproducesFixtureQuantization) {
  // Re-quantizing the bf16 fixture weights must give the bytes of the 4-bit mlx directory.
  std::string bf16_dir = kShared + "/fixtures/qwen2_vl/tiny-bf16";
  if (!fs::exists(bf16_dir)) GTEST_SKIP() << "shared fixtures absent";
  Checkpoint ref = Checkpoint::open(bf16_dir);
  Checkpoint mlx = Checkpoint::open(kShared + "/fixtures/qwen2_vl/tiny-mlx-4bit");
  Tensor w = ref.get("model.layers.0.mlp.gate_proj.weight").to(DType::F32);
  MlxQuantized q = mlx_quantize(w.data<float>(), w.dim(0), w.dim(1), 4, 64, DType::BF16);
  Tensor packed = mlx.get("language_model.model.layers.0.mlp.gate_proj.weight");
  ASSERT_EQ(packed.shape(), q.packed.shape());
  int64_t differing = 0;
  for (int64_t i = 0; i < packed.numel(); ++i) differing += packed.data<uint32_t>()[i] != q.packed.data<uint32_t>()[i];
  EXPECT_EQ(differing, 0);
  EXPECT_EQ(mlx.get("language_model.model.layers.0.mlp.gate_proj.scales").to_floats(), q.scales.to_floats());
}

}  // namespace
}  // namespace vlm::nn
