#include "generate/generator.h"

#include <gtest/gtest.h>

#include <cmath>

#include "fake_model.h"
#include "generate/sampler.h"

namespace vlm {
namespace {

using testing::FakeModel;
using testing::FakeScript;
using testing::FakeText;

FakeScript scripted(std::vector<int32_t> tokens, int64_t context_length = 0) {
  FakeScript s;
  s.tokens = std::move(tokens);
  s.context_length = context_length;
  s.eos_ids = {15};
  return s;
}

FakeScript fixed(std::vector<float> logits) {
  FakeScript s;
  s.vocab = int64_t(logits.size());
  s.fixed_logits = std::move(logits);
  return s;
}

ModelInput prompt(int n) {
  ModelInput in;
  for (int i = 0; i < n; ++i) in.ids.push_back(1 + i % 3);
  return in;
}

// Ids 0..9 -> "a".."j"; 15 is EOS ("</s>" if it were ever decoded).
FakeText letters() {
  std::map<int32_t, std::string> m;
  for (int i = 0; i < 10; ++i) m[i] = std::string(1, char('a' + i));
  m[15] = "</s>";
  return FakeText(m);
}

struct Outcome {
  GenerationResult result;
  std::string streamed;
  int calls = 0;
};

Outcome run(const FakeModel& model, GenerationParams params, FakeText text, int prompt_len = 4,
            std::function<bool(std::string_view, int32_t)> cb = nullptr) {
  GenerationSetup setup;
  setup.model = &model;
  setup.text = &text;
  setup.eos_ids = model.info().eos_ids;
  setup.token_string = [](int32_t id) { return "t" + std::to_string(id); };
  Outcome r;
  r.result = generate_tokens(setup, prompt(prompt_len), params, [&](std::string_view s, int32_t id) {
    r.streamed += s;
    ++r.calls;
    return cb ? cb(s, id) : true;
  });
  return r;
}

TEST(Generate, StopsOnEosAndKeepsItInTheIds) {
  FakeModel m(scripted({0, 1, 2, 15, 3}));
  GenerationParams p;
  p.max_tokens = 50;
  Outcome r = run(m, p, letters());
  EXPECT_EQ(r.result.text, "abc");
  EXPECT_EQ(r.streamed, "abc");
  EXPECT_EQ(r.result.token_ids, (std::vector<int32_t>{0, 1, 2, 15}));
  EXPECT_EQ(r.result.finish_reason, "stop");
  EXPECT_EQ(m.counters.prefills, 1);
  EXPECT_EQ(m.counters.stepped, (std::vector<int32_t>{0, 1, 2}));  // EOS is never fed back
  EXPECT_EQ(r.result.stats.prompt_tokens, 4);
  EXPECT_EQ(r.result.stats.generated_tokens, 4);
  EXPECT_DOUBLE_EQ(r.result.stats.image_encode_ms, 1.5);
  EXPECT_GT(r.result.stats.peak_memory_bytes, 0);
}

TEST(Generate, ExtraEosAndIgnoreEos) {
  FakeModel m(scripted({0, 1, 2, 15, 3}));
  GenerationParams p;
  p.max_tokens = 50;
  p.extra_eos_ids = {1};
  Outcome r = run(m, p, letters());
  EXPECT_EQ(r.result.token_ids, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(r.result.finish_reason, "stop");

  FakeModel m2(scripted({0, 15, 2}));
  GenerationParams q;
  q.max_tokens = 5;
  q.ignore_eos = true;
  Outcome r2 = run(m2, q, letters());
  EXPECT_EQ(r2.result.token_ids, (std::vector<int32_t>{0, 15, 2, 0, 15}));
  EXPECT_EQ(r2.result.finish_reason, "length");
}

TEST(Generate, MaxTokensGivesLength) {
  FakeModel m(scripted({0, 1, 2}));
  GenerationParams p;
  p.max_tokens = 7;
  Outcome r = run(m, p, letters());
  EXPECT_EQ(r.result.token_ids.size(), 7u);
  EXPECT_EQ(r.result.text, "abcabca");
  EXPECT_EQ(r.result.finish_reason, "length");
  EXPECT_EQ(m.counters.steps, 6);  // the last token is not fed back
  p.max_tokens = 0;
  Outcome none = run(m, p, letters());
  EXPECT_TRUE(none.result.token_ids.empty());
  EXPECT_EQ(none.result.finish_reason, "length");
}

TEST(Generate, StopStringSpanningTokensIsNotEmitted) {
  FakeModel m(scripted({0, 1, 2, 3, 4, 5}));
  GenerationParams p;
  p.max_tokens = 50;
  p.stop = {"cde"};
  std::vector<std::string> pieces;
  Outcome r = run(m, p, letters(), 4, [&](std::string_view s, int32_t) {
    pieces.emplace_back(s);
    return true;
  });
  EXPECT_EQ(r.result.text, "ab");
  EXPECT_EQ(r.streamed, "ab");
  EXPECT_EQ(r.result.finish_reason, "stop");
  EXPECT_EQ(r.result.token_ids, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  // "c" and "cd" were held back: the callback saw "a", "b", "", "", "".
  EXPECT_EQ(pieces, (std::vector<std::string>{"a", "b", "", "", ""}));
}

TEST(Generate, HeldBackTextIsReleasedAtTheEnd) {
  FakeModel m(scripted({0, 1, 2}));
  GenerationParams p;
  p.max_tokens = 3;
  p.stop = {"cx"};
  Outcome r = run(m, p, letters());
  EXPECT_EQ(r.result.text, "abc");
  EXPECT_EQ(r.streamed, "abc");
  EXPECT_EQ(r.result.finish_reason, "length");
}

TEST(Generate, CallbackCanCancel) {
  FakeModel m(scripted({0, 1, 2}));
  GenerationParams p;
  p.max_tokens = 50;
  int seen = 0;
  Outcome r = run(m, p, letters(), 4, [&](std::string_view, int32_t) { return ++seen < 3; });
  EXPECT_EQ(r.result.finish_reason, "cancelled");
  EXPECT_EQ(r.result.token_ids.size(), 3u);
  EXPECT_EQ(r.result.text, "abc");
  EXPECT_EQ(m.counters.steps, 2);
}

TEST(Generate, PromptLongerThanContextIsAClearError) {
  FakeModel m(scripted({0}, 8));
  GenerationParams p;
  try {
    run(m, p, letters(), 9);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("9 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("context length of 8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run(m, p, letters(), 0), Error);
}

TEST(Generate, ContextLimitEndsGenerationWithLength) {
  FakeModel m(scripted({0, 1, 2}, 8));
  GenerationParams p;
  p.max_tokens = 100;
  Outcome r = run(m, p, letters(), 5);
  EXPECT_EQ(r.result.token_ids.size(), 3u);  // 5 + 3 = 8 tokens fill the context
  EXPECT_EQ(r.result.finish_reason, "length");
}

TEST(Generate, LogprobsAreLogSoftmaxWithTopAlternatives) {
  std::vector<float> logits{1.0f, 3.0f, 2.0f, -1.0f};
  FakeModel m(fixed(logits));
  GenerationParams p;
  p.max_tokens = 2;
  p.logprobs = true;
  p.top_logprobs = 2;
  Outcome r = run(m, p, letters());
  ASSERT_EQ(r.result.logprobs.size(), 2u);
  double z = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(-1.0);
  const TokenLogprob& lp = r.result.logprobs[0];
  EXPECT_EQ(lp.id, 1);
  EXPECT_EQ(lp.token, "t1");
  EXPECT_NEAR(lp.logprob, 3.0 - std::log(z), 1e-6);
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].id, 1);
  EXPECT_EQ(lp.top[1].id, 2);
  EXPECT_EQ(lp.top[1].token, "t2");
  EXPECT_NEAR(lp.top[1].logprob, 2.0 - std::log(z), 1e-6);
}

TEST(Generate, LogprobsAreOfTheRawModelDistributionEvenWhenSampling) {
  std::vector<float> logits{0.0f, 0.5f, 0.2f};
  FakeModel m(fixed(logits));
  GenerationParams p;
  p.max_tokens = 20;
  p.logprobs = true;
  p.sampling.temperature = 0.7f;
  p.sampling.seed = 3;
  Outcome r = run(m, p, letters());
  auto expected = log_softmax(logits);
  for (const auto& lp : r.result.logprobs) EXPECT_FLOAT_EQ(lp.logprob, expected[size_t(lp.id)]);
}

TEST(Generate, SeededSamplingIsReproducible) {
  std::vector<float> logits{0.0f, 0.1f, 0.2f, 0.3f, 0.1f, 0.0f};
  FakeModel m(fixed(logits));
  GenerationParams p;
  p.max_tokens = 30;
  p.sampling.temperature = 1.0f;
  p.sampling.seed = 1234;
  Outcome a = run(m, p, letters());
  Outcome b = run(m, p, letters());
  EXPECT_EQ(a.result.token_ids, b.result.token_ids);
  p.sampling.seed = 1235;
  Outcome c = run(m, p, letters());
  EXPECT_NE(a.result.token_ids, c.result.token_ids);
}

}  // namespace
}  // namespace vlm

namespace vlm {
namespace {

// Sequences of a batch leave it at different steps (the context fills at different lengths) and
// each result equals the single-sequence result.
TEST(GenerateBatch, EachSequenceEqualsItsSingleRun) {
  FakeScript script = scripted({0, 1, 2, 3, 4, 5, 6, 7}, /*context_length=*/10);
  GenerationParams p;
  p.max_tokens = 50;
  p.stop = {"fg"};
  std::vector<ModelInput> prompts = {prompt(2), prompt(7), prompt(4)};
  FakeModel batched(script);
  std::vector<FakeText> texts(3, letters());
  std::vector<const ModelInput*> inputs;
  std::vector<TextStream*> streams;
  for (size_t i = 0; i < prompts.size(); ++i) {
    inputs.push_back(&prompts[i]);
    streams.push_back(&texts[i]);
  }
  GenerationSetup setup;
  setup.model = &batched;
  setup.eos_ids = batched.info().eos_ids;
  std::vector<GenerationResult> results = generate_batch_tokens(setup, inputs, streams, p);
  ASSERT_EQ(results.size(), 3u);
  for (size_t i = 0; i < prompts.size(); ++i) {
    FakeModel alone(script);
    Outcome r = run(alone, p, letters(), int(prompts[i].ids.size()));
    EXPECT_EQ(results[i].token_ids, r.result.token_ids) << i;
    EXPECT_EQ(results[i].text, r.result.text) << i;
    EXPECT_EQ(results[i].finish_reason, r.result.finish_reason) << i;
  }
  EXPECT_EQ(results[0].text, "abcde");  // "fg" stops it
  EXPECT_EQ(results[0].finish_reason, "stop");
  EXPECT_EQ(results[1].token_ids.size(), 3u);  // context of 10 full
  EXPECT_EQ(results[1].finish_reason, "length");
  EXPECT_EQ(batched.counters.prefills, 3);

  std::vector<TextStream*> too_few(2, &texts[0]);
  EXPECT_THROW(generate_batch_tokens(setup, inputs, too_few, p), Error);
}

}  // namespace
}  // namespace vlm
