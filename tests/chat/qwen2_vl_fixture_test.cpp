// Every conversation of the shared Qwen2-VL fixture renders byte for byte like the reference
// renderers (transformers.js / @huggingface/jinja) did.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "text/chat_template.h"

namespace {

std::string shared_dir() {
  return VLM_SHARED_DIR;
}

TEST(ChatTemplateFixture, Qwen2VlRendersEveryCase) {
  std::string tpl_path = shared_dir() + "/assets/qwen2-vl-2b-instruct/chat_template.json";
  std::string cases_path = shared_dir() + "/fixtures/chat_template/qwen2-vl-2b-instruct.jsonl";
  if (!std::filesystem::exists(shared_dir())) GTEST_SKIP() << "no shared folder " << shared_dir();
  std::ifstream tf(tpl_path);
  ASSERT_TRUE(tf) << tpl_path;
  std::string tpl = nlohmann::json::parse(tf).at("chat_template").get<std::string>();
  std::ifstream cf(cases_path);
  ASSERT_TRUE(cf) << cases_path;
  std::string line;
  int n = 0;
  while (std::getline(cf, line)) {
    if (line.empty()) continue;
    auto c = nlohmann::ordered_json::parse(line);
    nlohmann::ordered_json ctx = {{"messages", c["messages"]},
                                  {"add_generation_prompt", c["add_generation_prompt"]},
                                  {"add_vision_id", c["add_vision_id"]}};
    EXPECT_EQ(vlm::render_chat_template(tpl, ctx), c["rendered"].get<std::string>()) << c["name"];
    ++n;
  }
  EXPECT_EQ(n, 20);
}

}  // namespace
