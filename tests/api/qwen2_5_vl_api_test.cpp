// Qwen2.5-VL through the public API: each fixture case's chat messages (image files, video frame
// lists with their "fps") -> prompt text, token ids and 16 greedy tokens, for every checkpoint
// layout of shared/fixtures/qwen2_5_vl.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <tuple>

#include "io/json_file.h"
#include "io/safetensors.h"
#include "test_scope.h"
#include "vlm/vlm.hpp"

namespace vlm {
namespace {

const std::string kDir = std::string(VLM_SHARED_DIR) + "/fixtures/qwen2_5_vl";

class Qwen25Api : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  void SetUp() override {
    if (!std::filesystem::is_directory(kDir + "/cases")) GTEST_SKIP() << "no fixtures at " << kDir;
  }
};

TEST_P(Qwen25Api, PromptIdsAndGreedyTokens) {
  auto [case_name, model_name] = GetParam();
  const json meta = read_json_file(kDir + "/cases/" + case_name + ".json");
  auto st = SafetensorsFile::open(kDir + "/cases/" + case_name + ".safetensors");
  static std::map<std::string, std::unique_ptr<ModelContext>> contexts;
  auto& ctx = contexts[model_name];
  if (!ctx) {
    LoadOptions o;
    o.threads = 2;
    o.precision = "exact";
    ctx = std::make_unique<ModelContext>(ModelContext::load(kDir + "/" + model_name, o));
  }
  UserInput ui = UserInput::from_messages_json(meta["messages"].dump(), kDir);
  PreparedInput in = ctx->prepare(ui);
  EXPECT_EQ(in.prompt_text(), meta["prompt_text"].get<std::string>());
  std::vector<int64_t> ids(in.ids().begin(), in.ids().end());
  EXPECT_EQ(ids, st->tensor("input_ids").to_ints());
  GenerationParams p;
  p.max_tokens = 16;
  p.ignore_eos = true;
  p.sampling.temperature = 0;
  GenerationResult r = ctx->generate(in, p);
  std::vector<int64_t> got(r.token_ids.begin(), r.token_ids.end());
  EXPECT_EQ(got, st->tensor(model_name + ".generated_ids").to_ints());
}

INSTANTIATE_TEST_SUITE_P(AllCases, Qwen25Api,
                         ::testing::Combine(::testing::ValuesIn(test::sanitizer_share(std::vector<std::string>{
                                                "01_text_only", "02_image_partial_windows", "03_two_images",
                                                "04_video_fps1", "05_multi_turn", "06_small_image_system",
                                                "07_video_then_image"})),
                                            ::testing::Values("tiny-bf16", "tiny-mlx-4bit", "tiny-mlx-8bit")),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace vlm
