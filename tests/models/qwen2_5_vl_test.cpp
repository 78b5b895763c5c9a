// Qwen2.5-VL against the oracle fixtures (shared/fixtures/qwen2_5_vl): window index, positions,
// every stored tensor and the greedy tokens for every case in every checkpoint layout, the
// processor from the case messages and image files, and clear errors for bad configs.
#include "models/qwen2_5_vl/qwen2_5_vl.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "models/registry.h"
#include "qwen2_vl_fixtures.h"
#include "test_scope.h"
#include "trace_util.h"

namespace vlm {
namespace {

using namespace qwen2vl_test;
using vlm::testing::forward_trace;
using vlm::testing::test_env;

std::string dir25() {
  return shared_dir() + "/fixtures/qwen2_5_vl";
}
bool have25() {
  return std::filesystem::is_directory(dir25() + "/cases");
}
const std::vector<std::string>& cases25() {
  static const std::vector<std::string> names = {
      "01_text_only",  "02_image_partial_windows", "03_two_images",      "04_video_fps1",
      "05_multi_turn", "06_small_image_system",    "07_video_then_image"};
  return names;
}
const std::vector<std::string>& models25() {
  static const std::vector<std::string> names = {"tiny-bf16", "tiny-mlx-4bit", "tiny-mlx-8bit"};
  return names;
}

const Qwen2_5_VLModel& model25(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Qwen2_5_VLModel>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[name];
  if (!slot) slot = Qwen2_5_VLModel::load(Checkpoint::open(dir25() + "/" + name));
  return *slot;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LE(max_abs_diff(got.data(), want.data(), got.size()), tol) << what;
}

class Qwen25Case : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!have25()) GTEST_SKIP() << "no fixtures at " << dir25();
  }
};

// (c) get_window_index and the full-attention segments from the grids, exact.
TEST_P(Qwen25Case, WindowIndexAndSeqlens) {
  Case c = load_case(GetParam(), dir25());
  const Qwen2_5_VLVisionConfig& v = model25("tiny-bf16").config().vision;
  ASSERT_EQ(v.window_units(), 3);
  int checked = 0;
  for (std::string kind : {"image", "video"}) {
    std::vector<Grid> grids = grids_of(c, kind + "_grid_thw");
    if (grids.empty()) continue;
    WindowIndex w = qwen2_5_vl_window_index(grids, v.spatial_merge_size, v.window_units());
    EXPECT_EQ(w.index, c.ints(kind + "_window_index")) << kind;
    EXPECT_EQ(w.cu_seqlens, c.ints(kind + "_cu_window_seqlens")) << kind;
    EXPECT_EQ(w.frame_seqlens, c.ints(kind + "_cu_seqlens")) << kind;
    ++checked;
  }
  EXPECT_EQ(checked, int(c.has("image_grid_thw")) + int(c.has("video_grid_thw")));
}

// (d) get_rope_index with the videos' second_per_grid_ts and tokens_per_second, exact.
TEST_P(Qwen25Case, PositionIdsAndRopeDelta) {
  Case c = load_case(GetParam(), dir25());
  ModelInput in = stored_input(c);
  const Qwen2_5_VLConfig& cfg = model25("tiny-bf16").config();
  MRopeIndex idx = qwen2vl_rope_index(in.ids, in.image_grids, in.video_grids, cfg.text,
                                      cfg.video_time_scale(in.video_second_per_grid, in.video_grids.size()));
  std::vector<int64_t> want = c.ints("position_ids");
  const size_t L = in.ids.size();
  ASSERT_EQ(want.size(), 3 * L);
  for (size_t a = 0; a < 3; ++a)
    EXPECT_EQ(idx.positions[a], std::vector<int64_t>(want.begin() + a * L, want.begin() + (a + 1) * L)) << "axis " << a;
  EXPECT_EQ(idx.delta, c.ints("rope_delta")[0]);
}

// The processor from the case's messages and image files: prompt, ids, grids, second_per_grid_ts
// and pixel values (PNG inputs: exact).
TEST_P(Qwen25Case, ProcessorFromMessages) {
  Case c = load_case(GetParam(), dir25());
  const std::string dir = dir25() + "/tiny-bf16";
  static Tokenizer tok = Tokenizer::from_dir(dir);
  auto proc = create_processor(dir, tok, read_json_file(dir + "/config.json"));
  ModelInput in = proc->prepare(to_messages(c.meta["messages"], dir25()), ProcessingOptions{});
  EXPECT_EQ(in.prompt_text, c.meta["prompt_text"].get<std::string>());
  std::vector<int32_t> want_ids;
  for (int64_t id : c.ints("input_ids")) want_ids.push_back(int32_t(id));
  EXPECT_EQ(in.ids, want_ids);
  EXPECT_EQ(in.image_grids, grids_of(c, "image_grid_thw"));
  EXPECT_EQ(in.video_grids, grids_of(c, "video_grid_thw"));
  EXPECT_EQ(in.video_second_per_grid, stored_input(c).video_second_per_grid);
  for (auto [items, tensor] :
       {std::make_pair(&in.images, "pixel_values"), std::make_pair(&in.videos, "pixel_values_videos")}) {
    if (!c.has(tensor)) continue;
    std::vector<float> got;
    for (const Tensor& t : *items) {
      std::vector<float> v = t.to_floats();
      got.insert(got.end(), v.begin(), v.end());
    }
    expect_close(got, c.floats(tensor), 1e-6f, tensor);
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, Qwen25Case, ::testing::ValuesIn(cases25()));

class Qwen25CaseModel : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  void SetUp() override {
    if (!have25()) GTEST_SKIP() << "no fixtures at " << dir25();
  }
};

// (e) Vision tensors (patch embedding, after the windowed block 0, after the last block, merged
// features, all in pixel_values order) and decoder tensors of one forward pass.
TEST_P(Qwen25CaseModel, MatchesStoredTensors) {
  auto [case_name, model_name] = GetParam();
  Case c = load_case(case_name, dir25());
  const Qwen2_5_VLModel& m = model25(model_name);
  ModelInput in = stored_input(c);
  vlm::testing::ForwardTrace t = forward_trace(m, in, 8);
  const size_t depth = size_t(m.config().vision.depth);
  size_t pass = 0;  // images first, then videos
  for (const char* kind : {"image", "video"}) {
    const std::string k = model_name + "." + kind;
    if (!c.has(k + "_patch_embed")) continue;
    ASSERT_GT(t.rec.all("vision.patch_embed").size(), pass) << k;
    expect_close(t.rec.all("vision.patch_embed")[pass], c.floats(k + "_patch_embed"), 1e-4f, k + "_patch_embed");
    expect_close(t.rec.all("vision.layer")[pass * depth], c.floats(k + "_block0_out"), 1e-4f, k + "_block0_out");
    expect_close(t.rec.all("vision.layer")[(pass + 1) * depth - 1], c.floats(k + "_blocks_out"), 1e-4f,
                 k + "_blocks_out");
    expect_close(t.rec.all(std::string(kind) + "_features").back(), c.floats(k + "_features"), 1e-4f, k + "_features");
    ++pass;
  }
  EXPECT_EQ(pass, size_t(!in.images.empty()) + size_t(!in.videos.empty()));
  expect_decoder_matches(c, model_name, t, m.decoder().config());
}

// (f) 16 greedy tokens through the KV cache (EOS not special, as in the reference).
TEST_P(Qwen25CaseModel, GreedyTokens) {
  auto [case_name, model_name] = GetParam();
  Case c = load_case(case_name, dir25());
  const Qwen2_5_VLModel& m = model25(model_name);
  auto seq = m.start(test_env());
  std::vector<float> logits = seq->prefill(stored_input(c));
  std::vector<int64_t> generated;
  std::vector<float> margins = c.floats(model_name + ".greedy_margins");
  for (int i = 0; i < 16; ++i) {
    std::vector<float> top = logits;
    std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
    EXPECT_NEAR(top[0] - top[1], margins[size_t(i)], 2e-3f) << "margin at step " << i;
    generated.push_back(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (i < 15) logits = seq->step(int32_t(generated.back()));
  }
  EXPECT_EQ(generated, c.ints(model_name + ".generated_ids"));
}

INSTANTIATE_TEST_SUITE_P(AllCases, Qwen25CaseModel,
                         ::testing::Combine(::testing::ValuesIn(test::sanitizer_share(cases25())),
                                            ::testing::ValuesIn(models25())),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// Hand-computed window index: a 1x8x12-patch image (4x6 merged units) with 3x3-unit windows is
// padded to 6x9 units: windows of 9, 9, 0 / 3, 3, 0 units (the empty ones dropped), and the ids
// continue across items.
TEST(Qwen25WindowIndex, PartialAndEmptyWindows) {
  WindowIndex w = qwen2_5_vl_window_index({{1, 8, 12}, {1, 2, 2}}, 2, 3);
  std::vector<int64_t> want = {0,  1,  2,  6,  7,  8,  12, 13, 14, 3,  4,  5, 9,
                               10, 11, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
  EXPECT_EQ(w.index, want);
  EXPECT_EQ(w.cu_seqlens, (std::vector<int64_t>{0, 36, 72, 84, 96, 100}));
  EXPECT_EQ(w.frame_seqlens, (std::vector<int64_t>{0, 96, 100}));
  EXPECT_THROW(qwen2_5_vl_window_index({{1, 3, 4}}, 2, 3), Error);
}

// Bad configs and inputs: clear errors naming the field.
TEST(Qwen25Config, BadValuesNameTheField) {
  if (!have25()) GTEST_SKIP() << "no fixtures at " << dir25();
  const json good = read_json_file(dir25() + "/tiny-bf16/config.json");
  auto error_of = [](const json& j) -> std::string {
    try {
      Qwen2_5_VLConfig::from_json(j, "config.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of(good), "");
  json j = good;
  j["vision_config"]["window_size"] = 90;
  EXPECT_NE(error_of(j).find("window_size 90 is not a multiple of patch_size * spatial_merge_size = 28"),
            std::string::npos)
      << error_of(j);
  j = good;
  j["vision_config"]["fullatt_block_indexes"] = {1, 4};
  EXPECT_NE(error_of(j).find("fullatt_block_indexes entry 4 is outside [0, depth = 4)"), std::string::npos)
      << error_of(j);
  j = good;
  j["vision_config"]["out_hidden_size"] = 64;
  EXPECT_NE(error_of(j).find("out_hidden_size"), std::string::npos);
  j = good;
  j["model_type"] = "qwen2_vl";
  EXPECT_NE(error_of(j).find("is not qwen2_5_vl"), std::string::npos);

  // The flat (published) layout parses the same; tie_word_embeddings only in text_config counts.
  const Qwen2_5_VLConfig nested = Qwen2_5_VLConfig::from_json(good, "config.json");
  EXPECT_TRUE(nested.text.tie_word_embeddings);
  EXPECT_EQ(nested.vision.tokens_per_second, 2);
  EXPECT_EQ(nested.vision.fullatt_block_indexes, (std::vector<int64_t>{1, 3}));
  json flat = good;
  for (auto& [k, v] : good["text_config"].items())
    if (!v.is_null() && k != "model_type") flat[k] = v;
  flat.erase("text_config");
  flat["rope_scaling"] = {{"type", "mrope"}, {"mrope_section", {2, 3, 3}}};
  const Qwen2_5_VLConfig f = Qwen2_5_VLConfig::from_json(flat, "config.json");
  EXPECT_EQ(f.text.decoder_config().ropes[0].mrope_section, nested.text.decoder_config().ropes[0].mrope_section);
  EXPECT_TRUE(f.text.tie_word_embeddings);

  // Video time scale: int(second_per_grid_t) * tokens_per_second, as transformers casts it.
  EXPECT_EQ(nested.video_time_scale({2.0, 4.0, 0.5}, 3), (std::vector<double>{4.0, 8.0, 0.0}));
  EXPECT_THROW(nested.video_time_scale({2.0}, 2), Error);
}

// Shapes that disagree with the config: pixel rows vs grids, the checkpoint vs vision_config.
TEST(Qwen25Model, ShapeDisagreementsAreErrors) {
  if (!have25()) GTEST_SKIP() << "no fixtures at " << dir25();
  Case c = load_case("03_two_images", dir25());
  const Qwen2_5_VLModel& m = model25("tiny-bf16");
  std::vector<Grid> grids = grids_of(c, "image_grid_thw");
  EXPECT_THROW(m.encode_vision(test_env(), c.get("pixel_values"), {grids[0]}), Error);
  EXPECT_THROW(m.encode_vision(test_env(), c.get("pixel_values"), {{1, 8, 12}, {1, 10, 7}}), Error);

  // A config whose vision width disagrees with the weights fails at load, naming the tensor.
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / ("qwen25_bad_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  for (const auto& e : fs::directory_iterator(dir25() + "/tiny-bf16"))
    if (e.path().filename() != "config.json") fs::create_symlink(fs::canonical(e.path()), tmp / e.path().filename());
  json cfg = read_json_file(dir25() + "/tiny-bf16/config.json");
  cfg["vision_config"]["intermediate_size"] = 128;
  std::ofstream(tmp / "config.json") << cfg.dump();
  try {
    Qwen2_5_VLModel::load(Checkpoint::open(tmp.string()));
    ADD_FAILURE() << "loaded a checkpoint that disagrees with its config";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gate_proj"), std::string::npos) << e.what();
  }
  fs::remove_all(tmp);
}

// The published (pre-4.52) names `visual.*` / `model.*`, and an untied head (`lm_head.weight`,
// tie_word_embeddings false): the same outputs as tiny-bf16 (here: the embeddings as the head).
TEST(Qwen25Model, OlderNamesAndUntiedHeadGiveTheSameOutputs) {
  if (!have25()) GTEST_SKIP() << "no fixtures at " << dir25();
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / ("qwen25_names_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  for (const auto& e : fs::directory_iterator(dir25() + "/tiny-bf16"))
    if (e.path().filename() != "config.json" && e.path().filename() != "model.safetensors")
      fs::create_symlink(fs::canonical(e.path()), tmp / e.path().filename());
  json cfg = read_json_file(dir25() + "/tiny-bf16/config.json");
  cfg["text_config"]["tie_word_embeddings"] = false;
  std::ofstream(tmp / "config.json") << cfg.dump();
  auto src = SafetensorsFile::open(dir25() + "/tiny-bf16/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, entry] : src->entries()) {
    std::string n = name;
    if (n.rfind("model.visual.", 0) == 0) n = n.substr(6);
    if (n.rfind("model.language_model.", 0) == 0) n = "model." + n.substr(21);
    out.emplace_back(n, src->tensor(name));
  }
  out.emplace_back("lm_head.weight", src->tensor("model.language_model.embed_tokens.weight"));
  save_safetensors((tmp / "model.safetensors").string(), out, {{"format", "pt"}});
  auto renamed = Qwen2_5_VLModel::load(Checkpoint::open(tmp.string()));
  fs::remove_all(tmp);
  EXPECT_FALSE(renamed->config().text.tie_word_embeddings);
  for (const std::string name : {"02_image_partial_windows", "07_video_then_image"}) {
    Case c = load_case(name, dir25());
    auto seq = renamed->start(test_env());
    std::vector<float> logits = seq->prefill(stored_input(c));
    std::vector<int64_t> generated;
    for (int i = 0; i < 16; ++i) {
      generated.push_back(std::max_element(logits.begin(), logits.end()) - logits.begin());
      if (i < 15) logits = seq->step(int32_t(generated.back()));
    }
    EXPECT_EQ(generated, c.ints("tiny-bf16.generated_ids")) << name;
  }
}

}  // namespace
}  // namespace vlm
