// Gemma 3 through the public C++ API: every fixture case x model directory, from the chat messages
// (Hugging Face style JSON with image paths) to the oracle's 16 greedy tokens.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/json_file.h"
#include "test_scope.h"
#include "vlm/vlm.hpp"

namespace vlm {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = std::string(VLM_SHARED_DIR) + "/fixtures/gemma3";

// The case's messages with {"type": "image", "image": PATH} parts (paths relative to the fixture).
std::string messages_json(const json& c) {
  json msgs = c["messages"];
  size_t image = 0;
  for (json& m : msgs)
    if (m["content"].is_array())
      for (json& part : m["content"])
        if (part["type"] == "image") part["image"] = c["images"][image++]["file"];
  return msgs.dump();
}

TEST(Gemma3Api, EveryCaseGivesTheOracleGreedyTokens) {
  if (!fs::exists(kFixtures + "/cases")) GTEST_SKIP() << "shared fixtures absent";
  std::vector<fs::path> cases;
  for (auto& e : fs::directory_iterator(kFixtures + "/cases"))
    if (e.path().extension() == ".json") cases.push_back(e.path());
  std::sort(cases.begin(), cases.end());
  ASSERT_EQ(cases.size(), 6u);
  LoadOptions lo;
  lo.offline = true;
  lo.threads = 2;
  lo.precision = "exact";
  for (const char* dir : {"tiny-bf16", "tiny-mlx-4bit"}) {
    ModelContext ctx = ModelContext::load(kFixtures + "/" + dir, lo);
    EXPECT_EQ(ctx.info().model_type, "gemma3");
    EXPECT_EQ(ctx.info().eos_ids, (std::vector<int32_t>{1, 106}));
    for (const fs::path& f : test::sanitizer_share(cases)) {
      SCOPED_TRACE(f.stem().string() + " / " + dir);
      const json c = read_json_file(f.string());
      UserInput in = UserInput::from_messages_json(messages_json(c), kFixtures, f.string());
      const PreparedInput prepared = ctx.prepare(in);
      EXPECT_EQ(prepared.prompt_text(), c["prompt_string"].get<std::string>());
      EXPECT_EQ(prepared.ids(), c["input_ids"].get<std::vector<int32_t>>());
      GenerationParams p;
      p.max_tokens = 16;
      p.ignore_eos = true;  // the oracle does not stop at EOS
      const GenerationResult r = ctx.generate(prepared, p);
      EXPECT_EQ(r.token_ids, c["models"][dir]["generated_ids"].get<std::vector<int32_t>>());
    }
  }
}

}  // namespace
}  // namespace vlm
