// Qwen2VLProcessor against the fixtures: chat messages + image files -> input_ids and pixel
// values; and the trained demo model captioning its sample images end to end.
#include <algorithm>
#include <cmath>

#include "media/image.h"
#include "models/registry.h"
#include "qwen2_vl_fixtures.h"

namespace vlm {
namespace {

using namespace qwen2vl_test;

// Tokenizers are loaded once per directory (the 7 MB tokenizer.json dominates the test time).
std::unique_ptr<Processor> processor_for(const std::string& dir, Tokenizer& tok) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(dir);
  if (it == cache.end()) it = cache.emplace(dir, Tokenizer::from_dir(dir)).first;
  tok = it->second;
  return create_processor(dir, tok, read_json_file(dir + "/config.json"));
}

class Qwen2VLProcessorCase : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  void SetUp() override {
    if (!have_fixtures()) GTEST_SKIP() << "no fixtures at " << fixture_dir();
  }
};

// (a, b) prompt -> input_ids exact; images -> pixel values (PNG exact; JPEG within a few levels).
TEST_P(Qwen2VLProcessorCase, IdsAndPixelValues) {
  auto [case_name, model_name] = GetParam();
  Case c = load_case(case_name);
  Tokenizer tok;
  auto proc = processor_for(fixture_dir() + "/" + model_name, tok);
  ModelInput in = proc->prepare(to_messages(c.meta["messages"], fixture_dir()), ProcessingOptions{});
  EXPECT_EQ(in.prompt_text, c.meta["prompt_text"].get<std::string>());
  std::vector<int32_t> want_ids;
  for (int64_t id : c.ints("input_ids")) want_ids.push_back(int32_t(id));
  EXPECT_EQ(in.ids, want_ids);
  EXPECT_EQ(in.image_grids, grids_of(c, "image_grid_thw"));
  EXPECT_EQ(in.video_grids, grids_of(c, "video_grid_thw"));
  const bool jpeg = case_name.rfind("08_", 0) == 0;
  for (auto [items, tensor, grids] : {std::make_tuple(&in.images, "pixel_values", &in.image_grids),
                                      std::make_tuple(&in.videos, "pixel_values_videos", &in.video_grids)}) {
    std::vector<Tensor> want = split_items(c, tensor, *grids);
    ASSERT_EQ(items->size(), want.size()) << tensor;
    for (size_t i = 0; i < want.size(); ++i) {
      std::vector<float> g = (*items)[i].to_floats(), w = want[i].to_floats();
      ASSERT_EQ(g.size(), w.size()) << tensor << " " << i;
      // One 8-bit level is 1/255/std <= 0.0151 after normalisation.
      EXPECT_LE(max_abs_diff(g.data(), w.data(), g.size()), jpeg ? 0.0151f * 3 : 0.f) << tensor << " " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, Qwen2VLProcessorCase,
                         ::testing::Combine(::testing::ValuesIn(case_names()),
                                            ::testing::Values("tiny-bf16", "tiny-mlx-4bit-2024")),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(Qwen2VLProcessor, OptionsAndMismatches) {
  if (!have_fixtures()) GTEST_SKIP() << "no fixtures at " << fixture_dir();
  Tokenizer tok;
  auto proc = processor_for(fixture_dir() + "/tiny-bf16", tok);
  ChatMessage m;
  m.role = "user";
  ContentPart img;
  img.kind = ContentPart::Kind::Image;
  img.image = load_image(fixture_dir() + "/images/tall_60x200.png");
  ContentPart text;
  text.text = "Hi";
  m.content = {img, text};
  // An explicit size is rounded to multiples of 28: 56x56 -> grid 4x4, 4 tokens.
  ProcessingOptions o;
  o.resize_width = 56;
  o.resize_height = 60;
  ModelInput in = proc->prepare({m}, o);
  ASSERT_EQ(in.image_grids.size(), 1u);
  EXPECT_EQ(in.image_grids[0], (Grid{1, 4, 4}));
  EXPECT_EQ(std::count(in.ids.begin(), in.ids.end(), 151655), 4);
  // Pixel limits override preprocessor_config.json.
  ProcessingOptions big;
  big.min_pixels = 112 * 112 * 4;
  big.max_pixels = 112 * 112 * 4;
  in = proc->prepare({m}, big);
  EXPECT_GE(in.image_grids[0][1] * in.image_grids[0][2] * 14 * 14, 112 * 112 * 2);
  EXPECT_EQ(std::count(in.ids.begin(), in.ids.end(), 151655), in.image_grids[0][1] * in.image_grids[0][2] / 4);
  // A text-only prompt, without a generation prompt.
  ProcessingOptions plain;
  plain.add_generation_prompt = false;
  in = proc->prepare({ChatMessage{"user", {text}}}, plain);
  EXPECT_TRUE(in.images.empty());
  EXPECT_EQ(tok.decode(in.ids),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  ContentPart empty_video;
  empty_video.kind = ContentPart::Kind::Video;
  EXPECT_THROW(proc->prepare({ChatMessage{"user", {empty_video}}}, {}), Error);
}

// The trained demo model: image file + "Describe the image." -> the exact caption ids.
class Qwen2VLDemo : public ::testing::TestWithParam<std::string> {};

TEST_P(Qwen2VLDemo, CaptionsSampleImages) {
  const std::string demo = shared_dir() + "/demo";
  if (!std::filesystem::exists(demo + "/cases.json")) GTEST_SKIP() << "no demo at " << demo;
  json cases = read_json_file(demo + "/cases.json");
  const std::string dir = demo + "/" + GetParam();
  Tokenizer tok;
  auto proc = processor_for(dir, tok);
  std::unique_ptr<Model> model = create_model(Checkpoint::open(dir));
  const std::vector<int32_t>& eos = model->info().eos_ids;
  ASSERT_NE(std::find(eos.begin(), eos.end(), 151645), eos.end());
  ASSERT_NE(std::find(eos.begin(), eos.end(), 151643), eos.end());
  for (const json& cs : cases["cases"]) {
    ModelInput in = proc->prepare(to_messages(cs["messages"], demo), ProcessingOptions{});
    EXPECT_EQ(in.ids, cs["input_ids"].get<std::vector<int32_t>>()) << cs["name"];
    auto seq = model->start(Compute::make(2));
    std::vector<float> logits = seq->prefill(in);
    std::vector<int32_t> out;
    for (int i = 0; i < 12; ++i) {
      int32_t tok_id = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
      out.push_back(tok_id);
      if (std::find(eos.begin(), eos.end(), tok_id) != eos.end()) break;
      logits = seq->step(tok_id);
    }
    EXPECT_EQ(out, cs["models"][GetParam()]["generated_ids"].get<std::vector<int32_t>>()) << cs["name"];
    EXPECT_EQ(tok.decode(out, true), cs["expected_caption"].get<std::string>()) << cs["name"];
  }
}

INSTANTIATE_TEST_SUITE_P(Both, Qwen2VLDemo, ::testing::Values("qwen2-vl-shapes", "qwen2-vl-shapes-4bit"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace vlm
