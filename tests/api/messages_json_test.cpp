#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "vlm/vlm.hpp"

namespace vlm {
namespace {

using Type = UserInput::Part::Type;

TEST(MessagesJson, StringAndStructuredContent) {
  UserInput in = UserInput::from_messages_json(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image", "image": "a/b.png"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
    {"role": "user", "content": [{"type": "video", "video": ["f0.png", "/abs/f1.png"]},
                                 {"type": "video", "video": "v.mp4"}]}
  ])",
                                               "/base/dir");
  ASSERT_EQ(in.messages.size(), 4u);
  EXPECT_EQ(in.messages[0].role, "system");
  ASSERT_EQ(in.messages[0].content.size(), 1u);
  EXPECT_EQ(in.messages[0].content[0].text, "Be brief.");
  const auto& user = in.messages[1].content;
  ASSERT_EQ(user.size(), 2u);
  EXPECT_EQ(user[0].type, Type::Text);
  EXPECT_EQ(user[1].type, Type::Image);
  EXPECT_EQ(user[1].image.path, "/base/dir/a/b.png");
  const auto& videos = in.messages[3].content;
  ASSERT_EQ(videos.size(), 2u);
  EXPECT_EQ(videos[0].video.frame_paths, (std::vector<std::string>{"/base/dir/f0.png", "/abs/f1.png"}));
  EXPECT_EQ(videos[1].video.path, "/base/dir/v.mp4");
}

// qwen-vl-utils: a video part may carry its sampling rate as "fps" (0 = not given: Options::fps).
TEST(MessagesJson, VideoFps) {
  UserInput in = UserInput::from_messages_json(R"([{"role": "user", "content": [
    {"type": "video", "video": ["f0.png", "f1.png"], "fps": 0.5}, {"type": "video", "video": "v.mp4"}]}])");
  const auto& c = in.messages[0].content;
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].video.fps, 0.5);
  EXPECT_EQ(c[1].video.fps, 0.0);
  for (const char* bad : {R"("fps": 0)", R"("fps": -1)", R"("fps": "2")"}) {
    const std::string text =
        std::string(R"([{"role": "user", "content": [{"type": "video", "video": "v.mp4", )") + bad + "}]}]";
    EXPECT_THROW(UserInput::from_messages_json(text), std::runtime_error) << bad;
  }
}

TEST(MessagesJson, OpenAIImageUrlForms) {
  // "aGVsbG8=" is base64 for "hello"; file:// URLs are percent-decoded and absolute.
  UserInput in = UserInput::from_messages_json(R"([{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}},
    {"type": "image_url", "image_url": {"url": "file:///tmp/my%20pic.png"}},
    {"type": "image_url", "image_url": "rel.jpg"}
  ]}])",
                                               "/data");
  const auto& c = in.messages[0].content;
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(std::string(c[0].image.bytes.begin(), c[0].image.bytes.end()), "hello");
  EXPECT_TRUE(c[0].image.path.empty());
  EXPECT_EQ(c[1].image.path, "/tmp/my pic.png");
  EXPECT_EQ(c[2].image.path, "/data/rel.jpg");
}

TEST(MessagesJson, ObjectWithMessagesKeyIsAccepted) {
  UserInput in = UserInput::from_messages_json(R"({"messages": [{"role": "user", "content": "x"}]})");
  ASSERT_EQ(in.messages.size(), 1u);
}

TEST(MessagesJson, ErrorsNameTheProblem) {
  auto message_of = [](const std::string& text) {
    try {
      UserInput::from_messages_json(text, "", "chat.json");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message_of("[").find("chat.json: invalid JSON"), std::string::npos);
  EXPECT_NE(message_of(R"({"role": "user"})").find("expected a JSON list"), std::string::npos);
  EXPECT_NE(message_of(R"([{"content": "x"}])").find("'role'"), std::string::npos);
  std::string unknown = message_of(R"([{"role": "user", "content": [{"type": "audio"}]}])");
  EXPECT_NE(unknown.find("message 0, part 0"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("'audio'"), std::string::npos) << unknown;
  EXPECT_NE(
      message_of(R"([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}])")
          .find("remote URLs"),
      std::string::npos);
  EXPECT_NE(
      message_of(
          R"([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}])")
          .find("base64"),
      std::string::npos);
  EXPECT_NE(message_of(R"([{"role": "user", "content": [{"type": "image"}]}])").find("without a source"),
            std::string::npos);
  EXPECT_NE(message_of(R"([{"role": "user", "content": 5}])").find("'content'"), std::string::npos);
}

TEST(UserInputBuilders, FromPromptPutsImagesFirst) {
  UserInput in = UserInput::from_prompt("Describe.", {"a.png", "b.png"}, "sys");
  ASSERT_EQ(in.messages.size(), 2u);
  EXPECT_EQ(in.messages[0].role, "system");
  ASSERT_EQ(in.messages[1].content.size(), 3u);
  EXPECT_EQ(in.messages[1].content[0].image.path, "a.png");
  EXPECT_EQ(in.messages[1].content[2].text, "Describe.");
}

TEST(ModelDefaults, BuiltinsAndRuntimeRegistration) {
  auto q = find_model_defaults("mlx-community/Qwen2-VL-2B-Instruct-4bit");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->prompt, "Describe the image in English");
  ASSERT_TRUE(find_model_defaults("mlx-community/paligemma-3b-mix-448-8bit").has_value());
  for (const char* id : {"mlx-community/Qwen2.5-VL-3B-Instruct-4bit", "mlx-community/Qwen2.5-VL-3B-Instruct-8bit",
                         "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct",
                         "mlx-community/gemma-3-4b-it-qat-4bit", "mlx-community/gemma-3-12b-it-qat-4bit",
                         "mlx-community/gemma-3-27b-it-qat-4bit", "google/gemma-3-4b-it"})
    EXPECT_TRUE(find_model_defaults(id).has_value()) << id;
  EXPECT_FALSE(find_model_defaults("nobody/nothing").has_value());
  ModelDefaults d;
  d.prompt = "caption en";
  d.max_tokens = 7;
  register_model_defaults("me/my-model", d);
  auto got = find_model_defaults("me/my-model");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->max_tokens, 7);
  bool listed = false;
  for (const auto& [id, v] : known_models()) listed |= id == "me/my-model";
  EXPECT_TRUE(listed);
}

TEST(ModelPaths, MissingModelSaysHowToGetIt) {
  try {
    resolve_model_dir("/definitely/not/here");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("vlm download"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_model_dir(""), std::exception);
}

}  // namespace
}  // namespace vlm
