#include "generate/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>

namespace vlm {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> logs(std::vector<double> probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(float(std::log(p)));
  return out;
}

// Empirical distribution of `n` draws.
std::map<int32_t, double> frequencies(Sampler& s, const std::vector<float>& logits, int n) {
  std::map<int32_t, double> f;
  for (int i = 0; i < n; ++i) f[s.sample(logits, {})] += 1.0 / n;
  return f;
}

SamplingParams seeded(float temperature, uint64_t seed = 7) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

TEST(Sampler, GreedyIsArgmaxWithLowestIndexOnTies) {
  Sampler s(seeded(0.0f));
  EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 2.9f}, {}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 5.0f, 5.0f}, {}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{-kInf, -3.0f, -kInf}, {}), 1);
}

TEST(Sampler, SameSeedSameDrawsDifferentSeedDifferentDraws) {
  std::vector<float> logits = logs({0.2, 0.2, 0.2, 0.2, 0.2});
  Sampler a(seeded(1.0f, 42)), b(seeded(1.0f, 42)), c(seeded(1.0f, 43));
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 200; ++i) {
    da.push_back(a.sample(logits, {}));
    db.push_back(b.sample(logits, {}));
    dc.push_back(c.sample(logits, {}));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Sampler, DrawsFollowTheSoftmax) {
  Sampler s(seeded(1.0f));
  auto f = frequencies(s, logs({0.5, 0.3, 0.2}), 20000);
  EXPECT_NEAR(f[0], 0.5, 0.015);
  EXPECT_NEAR(f[1], 0.3, 0.015);
  EXPECT_NEAR(f[2], 0.2, 0.015);
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  // p ∝ exp(l / T): with l = log(0.8), log(0.2) and T = 0.5 the odds become 16:1.
  Sampler s(seeded(0.5f));
  auto f = frequencies(s, logs({0.8, 0.2}), 20000);
  EXPECT_NEAR(f[0], 16.0 / 17.0, 0.01);
  Sampler hot(seeded(1000.0f));
  auto g = frequencies(hot, logs({0.8, 0.2}), 20000);
  EXPECT_NEAR(g[0], 0.5, 0.02);
}

TEST(Warpers, TopKKeepsTiesWithTheKthValue) {
  SamplingParams p;
  p.top_k = 2;
  std::vector<float> l{1.0f, 1.0f, 1.0f, 0.0f, 2.0f};
  apply_warpers(l, p);
  EXPECT_EQ(l, (std::vector<float>{1.0f, 1.0f, 1.0f, -kInf, 2.0f}));
  SamplingParams one;
  one.top_k = 1;
  std::vector<float> m{0.5f, 3.0f, 2.0f};
  apply_warpers(m, one);
  EXPECT_EQ(m, (std::vector<float>{-kInf, 3.0f, -kInf}));
  SamplingParams big;
  big.top_k = 10;  // larger than the vocabulary: no-op
  std::vector<float> n{0.5f, 3.0f};
  apply_warpers(n, big);
  EXPECT_EQ(n, (std::vector<float>{0.5f, 3.0f}));
}

TEST(Warpers, TopPRemovesTheLowMassTail) {
  SamplingParams p;
  p.top_p = 0.75f;  // 1 - top_p = 0.25: tail sums 0.05, 0.20 removed; 0.50 is over -> 0.3 kept
  std::vector<float> l = logs({0.5, 0.3, 0.15, 0.05});
  apply_warpers(l, p);
  EXPECT_TRUE(std::isfinite(l[0]));
  EXPECT_TRUE(std::isfinite(l[1]));
  EXPECT_EQ(l[2], -kInf);
  EXPECT_EQ(l[3], -kInf);

  SamplingParams zero;
  zero.top_p = 0.0f;  // only the most likely token survives
  std::vector<float> m = logs({0.2, 0.5, 0.3});
  apply_warpers(m, zero);
  EXPECT_EQ(m[0], -kInf);
  EXPECT_TRUE(std::isfinite(m[1]));
  EXPECT_EQ(m[2], -kInf);

  SamplingParams off;  // top_p = 1: nothing removed
  std::vector<float> n = logs({0.999, 0.001});
  apply_warpers(n, off);
  EXPECT_TRUE(std::isfinite(n[1]));
}

// HF's TopPLogitsWarper written out literally: ascending sort, cumulative sum, tail removed.
std::vector<bool> reference_top_p_keep(const std::vector<float>& logits, double top_p) {
  std::vector<double> p(logits.size());
  double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
  for (size_t i = 0; i < p.size(); ++i) z += p[i] = std::exp(double(logits[i]) - mx);
  for (double& v : p) v /= z;
  std::vector<size_t> asc(p.size());
  for (size_t i = 0; i < asc.size(); ++i) asc[i] = i;
  std::sort(asc.begin(), asc.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<bool> keep(p.size(), true);
  double cum = 0;
  for (size_t r = 0; r + 1 < asc.size(); ++r) {
    cum += p[asc[r]];
    if (cum <= 1.0 - top_p) keep[asc[r]] = false;
  }
  return keep;
}

TEST(Warpers, TopPMatchesTheLiteralHFAlgorithmOnLargeVocabularies) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float scale : {0.5f, 3.0f}) {
    std::vector<float> logits(20000);
    for (float& v : logits) v = normal(rng) * scale;
    for (float top_p : {0.05f, 0.5f, 0.9f, 0.99f}) {
      SamplingParams p;
      p.top_p = top_p;
      std::vector<float> l = logits;
      apply_warpers(l, p);
      std::vector<bool> expected = reference_top_p_keep(logits, top_p);
      size_t kept = 0, mismatches = 0;
      for (size_t i = 0; i < l.size(); ++i) {
        kept += std::isfinite(l[i]);
        mismatches += std::isfinite(l[i]) != expected[i];
      }
      EXPECT_EQ(mismatches, 0u) << "scale " << scale << " top_p " << top_p << " kept " << kept;
    }
  }
  // A flat distribution over 1024 tokens (exact binary masses): top_p = 0.5 keeps exactly 512.
  SamplingParams half;
  half.top_p = 0.5f;
  std::vector<float> flat(1024, 0.0f);
  apply_warpers(flat, half);
  EXPECT_EQ(std::count_if(flat.begin(), flat.end(), [](float v) { return std::isfinite(v); }), 512);
}

TEST(Warpers, MinPIsRelativeToTheTopProbability) {
  SamplingParams p;
  p.min_p = 0.5f;  // threshold 0.25
  std::vector<float> l = logs({0.5, 0.3, 0.15, 0.05});
  apply_warpers(l, p);
  EXPECT_TRUE(std::isfinite(l[0]));
  EXPECT_TRUE(std::isfinite(l[1]));
  EXPECT_EQ(l[2], -kInf);
  EXPECT_EQ(l[3], -kInf);

  SamplingParams all;
  all.min_p = 1.0f;  // only tokens as likely as the best survive
  std::vector<float> m = logs({0.4, 0.4, 0.2});
  apply_warpers(m, all);
  EXPECT_TRUE(std::isfinite(m[0]));
  EXPECT_TRUE(std::isfinite(m[1]));
  EXPECT_EQ(m[2], -kInf);
}

TEST(Warpers, SamplingNeverDrawsFilteredTokens) {
  SamplingParams p = seeded(1.0f);
  p.top_k = 2;
  Sampler s(p);
  auto f = frequencies(s, logs({0.1, 0.4, 0.3, 0.2}), 5000);
  EXPECT_EQ(f.count(0), 0u);
  EXPECT_EQ(f.count(3), 0u);
  EXPECT_NEAR(f[1], 4.0 / 7.0, 0.03);  // renormalised over the survivors
}

TEST(RepetitionPenalty, DividesPositiveMultipliesNegativeOncePerId) {
  std::vector<float> l{2.0f, -2.0f, 3.0f, 1.0f};
  std::vector<int32_t> ctx{0, 1, 0, 99, -1};  // repeats and out-of-range ids do not compound
  apply_repetition_penalty(l, ctx, 2.0f);
  EXPECT_EQ(l, (std::vector<float>{1.0f, -4.0f, 3.0f, 1.0f}));
}

TEST(RepetitionPenalty, OnlyTheLastNTokensCount) {
  SamplingParams p = seeded(0.0f);
  p.repetition_penalty = 4.0f;
  p.repetition_context_size = 1;
  Sampler s(p);
  std::vector<float> l{3.0f, 2.0f, 1.0f};
  // History {0, 2}: only token 2 is in the window, so token 0 keeps its lead.
  EXPECT_EQ(s.sample(l, std::vector<int32_t>{0, 2}), 0);
  // History {2, 0}: token 0 drops to 0.75 and token 1 wins.
  EXPECT_EQ(s.sample(l, std::vector<int32_t>{2, 0}), 1);
  p.repetition_context_size = 0;  // whole history
  Sampler all(p);
  EXPECT_EQ(all.sample(l, std::vector<int32_t>{0, 1, 2}), 0);  // 0.75, 0.5, 0.25
}

TEST(LogSoftmax, MatchesDirectFormula) {
  std::vector<float> l{1.0f, 2.0f, -kInf, 0.5f};
  auto lp = log_softmax(l);
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(0.5);
  EXPECT_NEAR(lp[0], 1.0 - std::log(z), 1e-6);
  EXPECT_NEAR(lp[1], 2.0 - std::log(z), 1e-6);
  EXPECT_EQ(lp[2], -kInf);
  EXPECT_NEAR(lp[3], 0.5 - std::log(z), 1e-6);
  // Large logits do not overflow.
  auto big = log_softmax(std::vector<float>{1000.0f, 1000.0f});
  EXPECT_NEAR(big[0], -std::log(2.0), 1e-6);
}

TEST(TopKEntries, DescendingWithLowIndexFirstOnTies) {
  auto t = top_k_entries(std::vector<float>{0.1f, 0.5f, 0.5f, 0.9f}, 3);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].first, 3);
  EXPECT_EQ(t[1].first, 1);
  EXPECT_EQ(t[2].first, 2);
  EXPECT_EQ(top_k_entries(std::vector<float>{1.0f}, 5).size(), 1u);
}

}  // namespace
}  // namespace vlm
