// Continuous batching through the public API: generations started on several threads on one
// PromptCache decode in shared batched steps, join and leave mid-batch, interleave a chunked prompt
// with the others' steps, and each gets exactly the tokens it gets alone, for every family.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "vlm/vlm.hpp"

namespace vlm {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = std::string(VLM_SHARED_DIR) + "/fixtures";
const std::string kImages = std::string(VLM_SHARED_DIR) + "/images";

GenerationParams greedy(int n) {
  GenerationParams p;
  p.max_tokens = n;
  p.ignore_eos = true;
  return p;
}

class ContinuousBatching : public ::testing::TestWithParam<std::string> {};

TEST_P(ContinuousBatching, RequestsJoiningAndLeavingMidBatchGetTheirOwnTokens) {
  const std::string dir = kFixtures + "/" + GetParam();
  if (!fs::exists(dir)) GTEST_SKIP() << "fixtures absent";
  LoadOptions o;
  o.threads = 2;
  o.precision = "exact";
  ModelContext ctx = ModelContext::load(dir, o);
  const bool paligemma = GetParam().rfind("paligemma", 0) == 0;
  UserInput chunked = UserInput::from_prompt(
      paligemma ? "answer en what is written here, and why" : "Write a long story about a camera and a rocket.",
      {kImages + "/rocket.jpg"});
  chunked.options.prefill_chunk = 4;  // its prompt yields the engine to the others' steps every 4 tokens
  const std::vector<PreparedInput> inputs = {
      ctx.prepare(UserInput::from_prompt(paligemma ? "caption en" : "Describe the image.", {kImages + "/camera.png"})),
      ctx.prepare(UserInput::from_prompt(paligemma ? "describe en" : "What is it?", {kImages + "/astronaut.png"})),
      ctx.prepare(chunked)};
  const std::vector<int> lengths = {14, 6, 5};

  PromptCache cache(ctx, 0);  // batching only
  // Request k + 1 starts at request k's third token, and request k waits for its first one.
  const size_t n = inputs.size();
  std::vector<std::promise<void>> first_token(n);
  std::vector<std::future<GenerationResult>> results(n);
  std::function<GenerationResult(size_t)> run = [&](size_t k) {
    int tokens = 0;
    return cache.generate(inputs[k], greedy(lengths[k]), [&, k](std::string_view, int32_t) {
      if (++tokens == 1) first_token[k].set_value();
      if (tokens == 3 && k + 1 < n) {
        results[k + 1] = std::async(std::launch::async, run, k + 1);
        first_token[k + 1].get_future().wait();
      }
      return true;
    });
  };
  results[0] = std::async(std::launch::async, run, 0);
  std::vector<GenerationResult> got;
  for (size_t k = 0; k < n; ++k) got.push_back(results[k].get());

  int64_t steps = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const GenerationResult alone = ctx.generate(inputs[k], greedy(lengths[k]));
    EXPECT_EQ(got[k].token_ids, alone.token_ids) << "request " << k;
    EXPECT_EQ(got[k].text, alone.text) << "request " << k;
    ASSERT_EQ(int(got[k].token_ids.size()), lengths[k]);
    steps += lengths[k] - 1;  // the first token comes from the prompt
  }
  const DecodeBatchStats stats = cache.decode_stats();
  EXPECT_EQ(stats.sequence_steps, steps);
  EXPECT_GE(stats.largest, 2) << "the requests overlapped but never shared a step";
  EXPECT_LT(stats.steps, steps);
}

INSTANTIATE_TEST_SUITE_P(Families, ContinuousBatching,
                         ::testing::Values("qwen2_vl/tiny-bf16", "qwen2_5_vl/tiny-mlx-4bit", "paligemma/tiny-mlx-8bit",
                                           "gemma3/tiny-bf16"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

}  // namespace
}  // namespace vlm
