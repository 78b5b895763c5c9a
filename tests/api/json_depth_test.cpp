// Messages JSON (CLI --messages, C API, apply_chat_template) refuses absurd nesting instead of letting a
// recursive consumer (the template engine's JSON conversion) overflow the stack.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>

#include "io/json_file.h"
#include "vlm/vlm.hpp"

namespace vlm {
namespace {

// [{"role":"user","content":"hi","extra":[[...]]}] with `depth` containers in total.
std::string messages_nested(int depth) {
  int inner = depth - 2;
  return R"([{"role": "user", "content": "hi", "extra": )" + std::string(inner, '[') + std::string(inner, ']') + "}]";
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonDepth, FromMessagesJson) {
  UserInput in = UserInput::from_messages_json(messages_nested(kMaxJsonDepth), "", "msgs");
  ASSERT_EQ(in.messages.size(), 1u);
  for (int depth : {kMaxJsonDepth + 1, 200000}) {
    std::string e = error_of([&] { UserInput::from_messages_json(messages_nested(depth), "", "msgs"); });
    EXPECT_NE(e.find("msgs: JSON nested deeper than"), std::string::npos) << e;
  }
}

TEST(JsonDepth, ApplyChatTemplate) {
  const std::string dir = std::string(VLM_SOURCE_DIR) + "/models/qwen2-vl-shapes-4bit";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " absent";
  TextProcessor tp = TextProcessor::load(dir);
  EXPECT_NE(tp.apply_chat_template(messages_nested(kMaxJsonDepth)).find("hi"), std::string::npos);
  // 200000 levels used to reach the template engine and overflow the stack converting the context.
  std::string e = error_of([&] { tp.apply_chat_template(messages_nested(200000)); });
  EXPECT_NE(e.find("messages: JSON nested deeper than"), std::string::npos) << e;
}

}  // namespace
}  // namespace vlm
