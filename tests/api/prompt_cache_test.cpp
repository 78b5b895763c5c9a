// Prompt caches through the public API: a ChatSession answers every turn as the whole conversation
// does without a cache; the vision-feature cache skips the encoder for an image it has seen with the
// same processing options, for every family with fixtures. Continuous batching on a PromptCache:
// generations started on several threads decode in shared batched steps, join and leave mid-batch,
// interleave a chunked prompt with the others' steps, and each gets exactly the tokens it gets alone.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "io/json_file.h"
#include "vlm/vlm.hpp"

namespace vlm {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = std::string(VLM_SHARED_DIR) + "/fixtures";
const std::string kImages = std::string(VLM_SHARED_DIR) + "/images";

LoadOptions exact(size_t vision_cache_bytes) {
  LoadOptions o;
  o.threads = 2;
  o.precision = "exact";
  o.vision_cache_bytes = vision_cache_bytes;
  return o;
}

std::string fixture_param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

GenerationParams greedy(int n) {
  GenerationParams p;
  p.max_tokens = n;
  p.ignore_eos = true;
  return p;
}

TEST(ChatSession, EveryTurnAnswersAsTheWholeConversation) {
  const std::string dir = kFixtures + "/qwen2_vl/tiny-bf16";
  if (!fs::exists(dir)) GTEST_SKIP() << "fixtures absent";
  ModelContext ctx = ModelContext::load(dir, exact(0));
  ChatSession session(ctx);
  session.set_system("You are terse.");
  std::vector<UserInput::Message> turns = {
      {"user", {UserInput::Part::image_path(kImages + "/camera.png"), UserInput::Part::text_part("What is it?")}},
      {"user", {UserInput::Part::text_part("And the colours?")}},
      {"user", {UserInput::Part::image_path(kImages + "/rocket.jpg"), UserInput::Part::text_part("Compare them.")}}};
  UserInput whole;
  whole.messages.push_back({"system", {UserInput::Part::text_part("You are terse.")}});
  int64_t previous_prompt = 0;
  for (size_t i = 0; i < turns.size(); ++i) {
    whole.messages.push_back(turns[i]);
    const GenerationResult want = ctx.generate(whole, greedy(6));
    const GenerationResult got = session.send(turns[i], greedy(6));
    EXPECT_EQ(got.token_ids, want.token_ids) << "turn " << i;
    EXPECT_EQ(got.text, want.text) << "turn " << i;
    EXPECT_EQ(got.stats.prompt_tokens, want.stats.prompt_tokens);
    EXPECT_EQ(want.stats.cached_tokens, 0);
    if (i > 0) {
      EXPECT_GE(got.stats.cached_tokens, previous_prompt - 1) << "turn " << i;
    }
    if (i == 1) {
      EXPECT_EQ(got.stats.image_encode_ms, 0) << "the image of turn 0 is cached";
    } else if (i == 2) {
      EXPECT_GT(got.stats.image_encode_ms, 0) << "a new image";
    }
    previous_prompt = got.stats.prompt_tokens;
    whole.messages.push_back({"assistant", {UserInput::Part::text_part(got.text)}});
  }
  EXPECT_EQ(session.history().size(), 2 * turns.size());
  EXPECT_GT(session.cached_tokens(), previous_prompt);
  EXPECT_GT(session.cache_bytes(), 0u);
  session.reset();
  EXPECT_EQ(session.cached_tokens(), 0);
  EXPECT_TRUE(session.history().empty());
  const GenerationResult again = session.send(turns[0], greedy(6));
  EXPECT_EQ(again.stats.cached_tokens, 0);
}

class VisionCache : public ::testing::TestWithParam<std::string> {};

TEST_P(VisionCache, SameImageSkipsTheEncoderOtherOptionsDoNot) {
  const std::string dir = kFixtures + "/" + GetParam();
  if (!fs::exists(dir)) GTEST_SKIP() << "fixtures absent";
  ModelContext cached = ModelContext::load(dir, exact(64 << 20)), plain = ModelContext::load(dir, exact(0));
  const std::string image = kImages + "/astronaut.png";
  const UserInput first = UserInput::from_prompt("caption en", {image});
  const UserInput second = UserInput::from_prompt("describe en", {image});
  GenerationResult a = cached.generate(first, greedy(4));
  EXPECT_GT(a.stats.image_encode_ms, 0);
  GenerationResult b = cached.generate(second, greedy(4));
  EXPECT_EQ(b.stats.image_encode_ms, 0) << "a new conversation with the same image";
  EXPECT_EQ(b.token_ids, plain.generate(second, greedy(4)).token_ids);
  // Other pixels (another size) are encoded again.
  UserInput resized = second;
  resized.options.resize_width = resized.options.resize_height = 56;
  if (GetParam().rfind("qwen2_vl", 0) == 0) {
    GenerationResult c = cached.generate(resized, greedy(4));
    EXPECT_GT(c.stats.image_encode_ms, 0);
    EXPECT_EQ(c.token_ids, plain.generate(resized, greedy(4)).token_ids);
  }
  UserInput other = UserInput::from_prompt("describe en", {kImages + "/camera.png"});
  GenerationResult d = cached.generate(other, greedy(4));
  EXPECT_GT(d.stats.image_encode_ms, 0);
  EXPECT_EQ(d.token_ids, plain.generate(other, greedy(4)).token_ids);
}

INSTANTIATE_TEST_SUITE_P(Families, VisionCache,
                         ::testing::Values("qwen2_vl/tiny-bf16", "qwen2_vl/tiny-mlx-4bit", "paligemma/tiny-bf16",
                                           "paligemma/tiny-mlx-8bit"),
                         fixture_param_name);

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

// An image prompt run as one chunk still pauses (GenerationParams::between_prefill_chunks, where a
// batching server lets the others decode) between the vision encoder's blocks; a text prompt run
// as one chunk does not pause at all; pausing changes no token.
TEST_P(ContinuousBatching, ImageEncodePausesBetweenVisionBlocks) {
  const std::string dir = kFixtures + "/" + GetParam();
  if (!fs::exists(dir)) GTEST_SKIP() << "fixtures absent";
  ModelContext ctx = ModelContext::load(dir, exact(0));
  const bool paligemma = GetParam().rfind("paligemma", 0) == 0;
  UserInput image = UserInput::from_prompt(paligemma ? "caption en" : "Describe the image.", {kImages + "/camera.png"});
  UserInput text = UserInput::from_prompt(paligemma ? "answer en why" : "Why?", {});
  if (paligemma) text = image;                                          // PaliGemma prompts always hold the image
  for (UserInput* in : {&image, &text}) in->options.prefill_chunk = 0;  // one chunk: pauses come from the encoder
  const int vision_depth = [&] {
    const json config = read_json_file(dir + "/config.json");
    const json& vc = config.at("vision_config");
    return vc.contains("depth") ? vc.at("depth").get<int>() : vc.at("num_hidden_layers").get<int>();
  }();
  ASSERT_GE(vision_depth, 2);
  int pauses = 0;
  GenerationParams counted = greedy(4);
  counted.between_prefill_chunks = [&] {
    // Another request's work in a pause, as under batching, is not this encode's work.
    if (++pauses == 1) ctx.generate(text, greedy(2));
  };
  const GenerationResult paused = ctx.generate(image, counted);
  EXPECT_EQ(pauses, vision_depth - 1);
  const GenerationResult alone = ctx.generate(image, greedy(4));
  EXPECT_EQ(paused.token_ids, alone.token_ids);
  EXPECT_GT(alone.stats.image_encode_gflop, 0);
  EXPECT_EQ(paused.stats.image_encode_gflop, alone.stats.image_encode_gflop);
  if (!paligemma) {
    pauses = 0;
    ctx.generate(text, counted);
    EXPECT_EQ(pauses, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ContinuousBatching,
                         ::testing::Values("qwen2_vl/tiny-bf16", "qwen2_5_vl/tiny-mlx-4bit", "paligemma/tiny-mlx-8bit",
                                           "gemma3/tiny-bf16"),
                         fixture_param_name);

}  // namespace
}  // namespace vlm
