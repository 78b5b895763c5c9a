#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace vlm {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Softmax of finite entries in double precision (the warpers compare cumulative mass against
// thresholds, where float32 sums would make edge cases depend on summation order).
std::vector<double> softmax_double(std::span<const float> logits) {
  float mx = kNegInf;
  for (float v : logits)
    if (v > mx) mx = v;
  std::vector<double> p(logits.size(), 0.0);
  if (!std::isfinite(mx)) {
    return p;
  }
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == kNegInf || std::isnan(logits[i])) continue;
    p[i] = std::exp(double(logits[i]) - double(mx));
    sum += p[i];
  }
  for (double& v : p) v /= sum;
  return p;
}

void apply_top_k(std::vector<float>& logits, int top_k) {
  if (top_k <= 0 || size_t(top_k) >= logits.size()) return;
  std::vector<float> sorted(logits);
  std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<float>());
  float threshold = sorted[top_k - 1];
  // As HF: everything strictly below the k-th largest value goes; ties with it stay.
  for (float& v : logits)
    if (v < threshold) v = kNegInf;
}

void apply_top_p(std::vector<float>& logits, float top_p) {
  if (top_p >= 1.0f) return;
  std::vector<double> p = softmax_double(logits);
  // HF sorts ascending and removes the tail whose cumulative mass is <= 1 - top_p; equivalently a token
  // goes when the mass of the tokens ranked above it reaches top_p. Ranking only a head of 256, 1024 or 8192
  // (enough for peaked distributions) avoids sorting a 150k vocabulary per token.
  std::vector<std::pair<double, int32_t>> ranked;  // (-p, id): ascending order = most likely first
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) ranked.emplace_back(-p[i], int32_t(i));
  auto count_kept = [&](size_t head) -> size_t {  // 0: the cut is not inside the head
    double above = 0;
    for (size_t r = 0; r < head; ++r) {
      if (above >= double(top_p)) return std::max<size_t>(r, 1);  // the most likely token always stays
      above -= ranked[r].first;
    }
    return head == ranked.size() ? head : 0;
  };
  size_t keep = 0;
  for (size_t head : {size_t(256), size_t(1024), size_t(8192), ranked.size()}) {
    head = std::min(head, ranked.size());
    if (head == ranked.size())
      std::sort(ranked.begin(), ranked.end());
    else
      std::partial_sort(ranked.begin(), ranked.begin() + std::ptrdiff_t(head), ranked.end());
    if ((keep = count_kept(head)) != 0 || head == ranked.size()) break;
  }
  std::vector<char> kept(logits.size(), 0);
  for (size_t r = 0; r < keep; ++r) kept[size_t(ranked[r].second)] = 1;
  for (size_t i = 0; i < logits.size(); ++i)
    if (!kept[i]) logits[i] = kNegInf;
}

void apply_min_p(std::vector<float>& logits, float min_p) {
  if (min_p <= 0.0f) return;
  std::vector<double> p = softmax_double(logits);
  double top = *std::max_element(p.begin(), p.end());
  double threshold = double(min_p) * top;
  int32_t best = argmax(logits);
  for (size_t i = 0; i < logits.size(); ++i)
    if (p[i] < threshold && int32_t(i) != best) logits[i] = kNegInf;
}

}  // namespace

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> context, float penalty) {
  if (penalty == 1.0f || penalty <= 0.0f) return;
  std::unordered_set<int32_t> seen;
  for (int32_t id : context) {
    if (id < 0 || size_t(id) >= logits.size() || !seen.insert(id).second) continue;
    float& v = logits[id];
    v = v < 0 ? v * penalty : v / penalty;
  }
}

std::vector<float> log_softmax(std::span<const float> logits) {
  float mx = kNegInf;
  for (float v : logits)
    if (v > mx) mx = v;
  std::vector<float> out(logits.size(), kNegInf);
  if (!std::isfinite(mx)) return out;
  double sum = 0;
  for (float v : logits)
    if (v != kNegInf && !std::isnan(v)) sum += std::exp(double(v) - double(mx));
  double lse = double(mx) + std::log(sum);
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] != kNegInf && !std::isnan(logits[i])) out[i] = float(double(logits[i]) - lse);
  return out;
}

std::vector<std::pair<int32_t, float>> top_k_entries(std::span<const float> values, int k) {
  std::vector<int32_t> idx(values.size());
  std::iota(idx.begin(), idx.end(), 0);
  size_t n = std::min(values.size(), size_t(std::max(k, 0)));
  auto better = [&](int32_t a, int32_t b) { return values[a] > values[b] || (values[a] == values[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), better);
  std::vector<std::pair<int32_t, float>> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(idx[i], values[idx[i]]);
  return out;
}

int32_t argmax(std::span<const float> values) {
  // NaN compares false, so it is never picked; strict '>' keeps the lowest index on ties.
  int32_t best = 0;
  float best_v = kNegInf;
  const float* v = values.data();
  for (size_t i = 0, n = values.size(); i < n; ++i) {
    if (v[i] > best_v) {
      best_v = v[i];
      best = int32_t(i);
    }
  }
  return best;
}

void apply_warpers(std::vector<float>& logits, const SamplingParams& params) {
  if (params.temperature > 0.0f && params.temperature != 1.0f)
    for (float& v : logits) v /= params.temperature;
  apply_top_k(logits, params.top_k);
  apply_top_p(logits, params.top_p);
  apply_min_p(logits, params.min_p);
}

Sampler::Sampler(const SamplingParams& params) : params_(params) {
  uint64_t seed = params.seed ? *params.seed : (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  rng_.seed(seed);
}

int32_t Sampler::draw(std::span<const float> logits) {
  std::vector<double> p = softmax_double(logits);
  // 53 random bits -> [0, 1): the same sequence on every platform, unlike std::uniform_real_distribution.
  double u = double(rng_() >> 11) * 0x1.0p-53;
  double cum = 0;
  int32_t last = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0) continue;
    cum += p[i];
    last = int32_t(i);
    if (u < cum) return last;
  }
  return last >= 0 ? last : argmax(logits);  // rounding left u just above the total
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const bool penalised = params_.repetition_penalty != 1.0f && params_.repetition_penalty > 0.0f;
  if (params_.temperature <= 0.0f && !penalised) return argmax(logits);  // no copy of the vocabulary
  work_.assign(logits.begin(), logits.end());
  int n = params_.repetition_context_size;
  std::span<const int32_t> context =
      (n <= 0 || size_t(n) >= history.size()) ? history : history.subspan(history.size() - size_t(n));
  apply_repetition_penalty(work_, context, params_.repetition_penalty);
  if (params_.temperature <= 0.0f) return argmax(work_);
  apply_warpers(work_, params_);
  return draw(work_);
}

}  // namespace vlm
