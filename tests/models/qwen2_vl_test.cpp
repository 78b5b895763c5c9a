// Qwen2-VL model against the oracle fixtures (shared/fixtures/qwen2_vl): every case in every
// checkpoint layout, fed with the stored ids / pixel values / grids.
#include <algorithm>
#include <cmath>
#include <tuple>

#include "qwen2_vl_fixtures.h"
#include "test_scope.h"
#include "trace_util.h"

namespace vlm {
namespace {

using namespace qwen2vl_test;
using vlm::testing::forward_trace;
using vlm::testing::test_env;

class Qwen2VLCaseModel : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  void SetUp() override {
    if (!have_fixtures()) GTEST_SKIP() << "no fixtures at " << fixture_dir();
  }
};

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LE(max_abs_diff(got.data(), want.data(), got.size()), tol) << what;
}

// (d) Intermediates of one forward pass equal the reference within float32 noise.
TEST_P(Qwen2VLCaseModel, MatchesStoredTensors) {
  auto [case_name, model_name] = GetParam();
  Case c = load_case(case_name);
  const Qwen2VLModel& m = model(model_name);
  ModelInput in = stored_input(c);
  vlm::testing::ForwardTrace t = forward_trace(m, in, 8);
  const std::string p = model_name + ".";
  const int depth = int(m.config().vision.depth);

  // The tower runs once for the images, then once for the videos: observations come in that order.
  int vision_checked = 0;
  size_t pass = 0;
  for (const char* kind : {"image", "video"}) {
    std::string k = p + kind;
    if (!c.has(k + "_patch_embed")) continue;
    ASSERT_GT(t.rec.all("vision.patch_embed").size(), pass) << k;
    expect_close(t.rec.all("vision.patch_embed")[pass], c.floats(k + "_patch_embed"), 1e-4f, k + "_patch_embed");
    expect_close(t.rec.all("vision.layer")[(pass + 1) * size_t(depth) - 1], c.floats(k + "_blocks_out"), 1e-4f,
                 k + "_blocks_out");
    expect_close(t.rec.last(std::string(kind) + "_features"), c.floats(k + "_features"), 1e-4f, k + "_features");
    ++vision_checked;
    ++pass;
  }
  EXPECT_EQ(vision_checked, int(!in.images.empty()) + int(!in.videos.empty()));

  expect_decoder_matches(c, model_name, t, m.decoder().config());
}

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

// (e) 16 greedy tokens through the KV cache equal the reference; every cached step's logits equal
// a full recomputation over prompt + generated tokens.
TEST_P(Qwen2VLCaseModel, GreedyWithKVCacheMatchesReferenceAndRecompute) {
  auto [case_name, model_name] = GetParam();
  Case c = load_case(case_name);
  const Qwen2VLModel& m = model(model_name);
  ModelInput in = stored_input(c);
  const int64_t V = m.config().vocab_size;

  auto seq = m.start(test_env());
  std::vector<float> logits = seq->prefill(in);
  ASSERT_EQ(int64_t(logits.size()), V);
  std::vector<std::vector<float>> step_logits;
  std::vector<int64_t> generated;
  for (int i = 0; i < 16; ++i) {
    step_logits.push_back(logits);
    int32_t tok = argmax(logits);
    generated.push_back(tok);
    if (i < 15) logits = seq->step(tok);
  }
  EXPECT_EQ(generated, c.ints(model_name + ".generated_ids"));
  EXPECT_EQ(seq->length(), int64_t(in.ids.size()) + 15);

  ModelInput full = in;
  for (int i = 0; i < 15; ++i) full.ids.push_back(int32_t(generated[size_t(i)]));
  vlm::testing::ForwardTrace t = forward_trace(m, full, 16);
  for (int i = 0; i < 16; ++i)
    EXPECT_LE(max_abs_diff(t.logits.data() + i * V, step_logits[size_t(i)].data(), size_t(V)), 1e-3f) << "step " << i;
}

INSTANTIATE_TEST_SUITE_P(AllCases, Qwen2VLCaseModel,
                         ::testing::Combine(::testing::ValuesIn(test::sanitizer_share(case_names())),
                                            ::testing::ValuesIn(model_names())),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// Block-diagonal vision attention: two images encoded together equal each encoded alone.
TEST(Qwen2VLVision, ImagesTogetherEqualImagesAlone) {
  if (!have_fixtures()) GTEST_SKIP() << "no fixtures at " << fixture_dir();
  Case c = load_case("03_two_images");
  const Qwen2VLModel& m = model("tiny-bf16");
  std::vector<Grid> grids = grids_of(c, "image_grid_thw");
  vlm::testing::Recorder rec;
  std::vector<float> together = m.encode_vision(test_env(), c.get("pixel_values"), grids, &rec.observer);
  EXPECT_LE(max_abs_diff(together.data(), c.floats("tiny-bf16.image_features").data(), together.size()), 1e-4f);
  EXPECT_EQ(rec.last("vision.patch_embed").size(), size_t(124 * 32));
  std::vector<Tensor> items = split_items(c, "pixel_values", grids);
  std::vector<float> alone = m.encode_vision(test_env(), items[0], {grids[0]});
  std::vector<float> second = m.encode_vision(test_env(), items[1], {grids[1]});
  alone.insert(alone.end(), second.begin(), second.end());
  ASSERT_EQ(alone.size(), together.size());
  EXPECT_LE(max_abs_diff(alone.data(), together.data(), alone.size()), 1e-5f);
  EXPECT_THROW(m.encode_vision(test_env(), c.get("pixel_values"), {grids[0]}), Error);
}

class Qwen2VLCase : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!have_fixtures()) GTEST_SKIP() << "no fixtures at " << fixture_dir();
  }
};

// (c) get_rope_index from ids + grids, exact.
TEST_P(Qwen2VLCase, PositionIdsAndRopeDelta) {
  Case c = load_case(GetParam());
  ModelInput in = stored_input(c);
  MRopeIndex idx = qwen2vl_rope_index(in.ids, in.image_grids, in.video_grids, model("tiny-bf16").config());
  std::vector<int64_t> want = c.ints("position_ids");
  const size_t L = in.ids.size();
  ASSERT_EQ(want.size(), 3 * L);
  for (size_t a = 0; a < 3; ++a)
    EXPECT_EQ(idx.positions[a], std::vector<int64_t>(want.begin() + a * L, want.begin() + (a + 1) * L)) << "axis " << a;
  EXPECT_EQ(idx.delta, c.ints("rope_delta")[0]);
  EXPECT_EQ(idx.delta, c.meta["rope_delta"].get<int64_t>());
}

INSTANTIATE_TEST_SUITE_P(AllCases, Qwen2VLCase, ::testing::ValuesIn(case_names()));

// The transformers docstring example (a video of 3x2x2 merged tokens, then text), after 3 text tokens.
TEST(Qwen2VLRopeIndex, VideoThenTextAndTextOnly) {
  Qwen2VLConfig cfg;
  cfg.vision.spatial_merge_size = 1;  // the docstring's grid is in merged units
  std::vector<int32_t> ids = {1, 2, cfg.vision_start_token_id};
  for (int i = 0; i < 12; ++i) ids.push_back(cfg.video_token_id);
  for (int i = 0; i < 5; ++i) ids.push_back(7);
  MRopeIndex idx = qwen2vl_rope_index(ids, {}, {{3, 2, 2}}, cfg);
  std::vector<int64_t> t = {0, 1, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 7, 8, 9, 10};
  std::vector<int64_t> h = {0, 1, 2, 3, 3, 4, 4, 3, 3, 4, 4, 3, 3, 4, 4, 6, 7, 8, 9, 10};
  std::vector<int64_t> w = {0, 1, 2, 3, 4, 3, 4, 3, 4, 3, 4, 3, 4, 3, 4, 6, 7, 8, 9, 10};
  EXPECT_EQ(idx.positions[0], t);
  EXPECT_EQ(idx.positions[1], h);
  EXPECT_EQ(idx.positions[2], w);
  EXPECT_EQ(idx.delta, 11 - 20);

  MRopeIndex text = qwen2vl_rope_index({5, 6, 7, 8}, {}, {}, cfg);
  for (auto& row : text.positions) EXPECT_EQ(row, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(text.delta, 0);
  // Pads that do not match the grid are an error, not a silent misalignment.
  std::vector<int32_t> short_video = {cfg.vision_start_token_id, cfg.video_token_id, cfg.video_token_id};
  EXPECT_THROW(qwen2vl_rope_index(short_video, {}, {{3, 2, 2}}, cfg), Error);
  EXPECT_THROW(qwen2vl_rope_index({cfg.vision_start_token_id, cfg.image_token_id}, {}, {}, cfg), Error);
}

}  // namespace
}  // namespace vlm
