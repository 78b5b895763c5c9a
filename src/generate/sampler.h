// Next-token selection as Hugging Face transformers does it: repetition penalty, then temperature,
// top-k, top-p and min-p warpers, then a draw from the remaining distribution (or argmax when greedy).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "vlm/vlm.hpp"

namespace vlm {

// HF RepetitionPenaltyLogitsProcessor over `context`: each distinct id's logit is divided by
// `penalty` when positive and multiplied when negative. Ids outside [0, logits.size()) are ignored.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> context, float penalty);

// log_softmax in double precision accumulation; -inf entries stay -inf.
std::vector<float> log_softmax(std::span<const float> logits);

// The `k` largest entries as (index, value), descending; ties keep the lower index first.
std::vector<std::pair<int32_t, float>> top_k_entries(std::span<const float> values, int k);

// Index of the largest entry (lowest index on ties).
int32_t argmax(std::span<const float> values);

// Applies temperature, top-k, top-p and min-p in that order (HF's warper order); removed entries
// become -inf. At least one entry always survives.
void apply_warpers(std::vector<float>& logits, const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Chooses the next token from `logits` given the ids so far (prompt + generated).
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
  // Draws an index from softmax(logits) with this sampler's generator (-inf entries never drawn).
  int32_t draw(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
};

}  // namespace vlm
