// Qwen2-VL config parsing, alternative checkpoint layouts and bad-input errors. Modified checkpoints
// are written to temporary directories from the tiny-bf16 fixture.
#include <unistd.h>

#include <fstream>
#include <functional>
#include <optional>

#include "models/registry.h"
#include "qwen2_vl_fixtures.h"
#include "trace_util.h"

namespace vlm {
namespace {

namespace fs = std::filesystem;
using namespace qwen2vl_test;

class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() / ("vlm_qwen2vl_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

json bf16_config() {
  return read_json_file(fixture_dir() + "/tiny-bf16/config.json");
}

void write_config(const TempDir& dir, const json& config) {
  std::ofstream(dir.str() + "/config.json") << config.dump(2);
}

// Rewrites the tiny-bf16 weights: `edit` returns the (possibly renamed / replaced) tensor, or
// nullopt to drop it. `vocab` > 0 keeps only that many embedding rows (small files for load errors).
void write_weights(
    const TempDir& dir,
    const std::function<std::optional<std::pair<std::string, Tensor>>(const std::string&, const Tensor&)>& edit,
    int64_t vocab = 0, std::vector<std::pair<std::string, Tensor>> extra = {}) {
  auto src = SafetensorsFile::open(fixture_dir() + "/tiny-bf16/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> out = std::move(extra);
  for (auto& [name, entry] : src->entries()) {
    Tensor t = src->tensor(name);
    if (vocab > 0 && name == "model.embed_tokens.weight") t = t.slice(0, 0, vocab).contiguous();
    if (auto e = edit(name, t)) out.push_back(std::move(*e));
  }
  save_safetensors(dir.str() + "/model.safetensors", out, {{"format", "pt"}});
}

auto keep_all = [](const std::string& n, const Tensor& t) -> std::optional<std::pair<std::string, Tensor>> {
  return std::make_pair(n, t);
};

// Loads `dir` expecting a vlm::Error whose message contains every string of `needles`.
void expect_load_error(const TempDir& dir, const std::vector<std::string>& needles) {
  try {
    Qwen2VLModel::load(Checkpoint::open(dir.str()));
    ADD_FAILURE() << "loading succeeded, expected an error mentioning " << needles[0];
  } catch (const Error& e) {
    for (auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

class Qwen2VLLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_fixtures()) GTEST_SKIP() << "no fixtures at " << fixture_dir();
  }
};

TEST_F(Qwen2VLLoad, RealConfigWithOmittedVisionKeysUsesHfDefaults) {
  json cfg = read_json_file(shared_dir() + "/assets/qwen2-vl-2b-instruct/config.awq.json");
  Qwen2VLConfig c = Qwen2VLConfig::from_json(cfg, "config.awq.json");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.mrope_section, (std::vector<int>{16, 24, 24}));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.vision.depth, 32);
  EXPECT_EQ(c.vision.embed_dim, 1280);
  EXPECT_EQ(c.vision.num_heads, 16);
  EXPECT_EQ(c.vision.mlp_ratio, 4);
  EXPECT_EQ(c.vision.hidden_size, 1536);
  EXPECT_EQ(c.vision.in_channels, 3);
  EXPECT_EQ(c.vision.patch_dim(), 1176);
  EXPECT_EQ(c.vision.hidden_act, "quick_gelu");
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{151645}));

  // Without vision hidden_size the HF default 3584 applies, which a 1536-wide LM cannot take.
  cfg["vision_config"].erase("hidden_size");
  EXPECT_THROW(Qwen2VLConfig::from_json(cfg, "x"), Error);
  cfg["hidden_size"] = 3584;
  cfg["num_attention_heads"] = 28;
  EXPECT_EQ(Qwen2VLConfig::from_json(cfg, "x").vision.hidden_size, 3584);
}

TEST_F(Qwen2VLLoad, ConfigVariants) {
  json cfg = bf16_config();
  // text_config nesting, rope_type spelling, eos list, in_channels spelling.
  json text = json::object();
  for (const char* k : {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                        "intermediate_size", "vocab_size", "rope_theta", "rms_norm_eps", "rope_scaling"}) {
    text[k] = cfg[k];
    cfg.erase(k);
  }
  text["rope_scaling"] = {{"rope_type", "default"}, {"mrope_section", {2, 3, 3}}};
  cfg["text_config"] = text;
  cfg["eos_token_id"] = {151645, 151643};
  cfg["vision_config"].erase("in_chans");
  cfg["vision_config"]["in_channels"] = 3;
  Qwen2VLConfig c = Qwen2VLConfig::from_json(cfg, "nested");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.mrope_section, (std::vector<int>{2, 3, 3}));
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{151645, 151643}));

  json bad = bf16_config();
  bad["rope_scaling"]["mrope_section"] = {2, 3, 4};
  EXPECT_THROW(Qwen2VLConfig::from_json(bad, "bad"), Error);
  bad = bf16_config();
  bad["rope_scaling"]["type"] = "yarn";
  EXPECT_THROW(Qwen2VLConfig::from_json(bad, "bad"), Error);
  bad = bf16_config();
  bad.erase("hidden_size");
  try {
    Qwen2VLConfig::from_json(bad, "cfg.json");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos) << e.what();
  }
  bad = bf16_config();
  bad["num_key_value_heads"] = 3;
  EXPECT_THROW(Qwen2VLConfig::from_json(bad, "bad"), Error);
  bad = bf16_config();
  bad["vision_config"]["hidden_act"] = "relu6";
  EXPECT_THROW(Qwen2VLConfig::from_json(bad, "bad"), Error);
}

TEST_F(Qwen2VLLoad, ModelInfoAndRegistry) {
  for (const std::string& name : model_names()) {
    const ModelInfo& info = model(name).info();
    EXPECT_EQ(info.model_type, "qwen2_vl");
    EXPECT_EQ(info.vocab_size, 151936);
    EXPECT_EQ(info.context_length, 32768);
    EXPECT_EQ(info.eos_ids.at(0), 151645) << name;
    EXPECT_GT(info.num_parameters, 151936 * 64) << name;
  }
  EXPECT_EQ(model("tiny-bf16").info().num_parameters, model("tiny-mlx-4bit").info().num_parameters);
  // The 2024 conversion has no generation_config.json; <|endoftext|> must still stop (the API
  // resolves the registry's extra EOS tokens through the tokenizer).
  EXPECT_EQ(extra_eos_tokens("qwen2_vl"), (std::vector<std::string>{"<|endoftext|>"}));
  std::unique_ptr<Model> m = create_model(Checkpoint::open(fixture_dir() + "/tiny-mlx-4bit"));
  EXPECT_EQ(m->info().model_type, "qwen2_vl");
}

// transformers >= 4.52 names (model.language_model.*, model.visual.*), text_config nesting, an
// untied lm_head equal to the embedding, and ignored rotary/position buffers give the same logits.
TEST_F(Qwen2VLLoad, NewerTransformersLayoutAndUntiedHead) {
  TempDir dir("newer");
  json cfg = bf16_config();
  cfg["tie_word_embeddings"] = false;
  write_config(dir, cfg);
  auto src = SafetensorsFile::open(fixture_dir() + "/tiny-bf16/model.safetensors");
  write_weights(dir,
                [&](const std::string& n, const Tensor& t) -> std::optional<std::pair<std::string, Tensor>> {
                  if (n.rfind("visual.", 0) == 0) return std::make_pair("model." + n, t);
                  return std::make_pair("model.language_model." + n.substr(6), t);
                },
                0,
                {{"model.visual.rotary_pos_emb.inv_freq", Tensor::from_floats({1, 2}, {2})},
                 {"lm_head.weight", src->tensor("model.embed_tokens.weight")}});
  auto m = Qwen2VLModel::load(Checkpoint::open(dir.str()));
  Case c = load_case("02_one_image");
  ModelInput in = stored_input(c);
  vlm::testing::ForwardTrace got = vlm::testing::forward_trace(*m, in, 2),
                             want = vlm::testing::forward_trace(model("tiny-bf16"), in, 2);
  EXPECT_EQ(got.rec.last("image_features"), want.rec.last("image_features"));
  EXPECT_EQ(got.logits, want.logits);
}

TEST_F(Qwen2VLLoad, ConfigDisagreeingWithShapesNamesTheTensor) {
  TempDir dir("shapes");
  fs::create_symlink(fixture_dir() + "/tiny-bf16/model.safetensors", dir.str() + "/model.safetensors");
  json cfg = bf16_config();
  cfg["intermediate_size"] = 256;
  write_config(dir, cfg);
  expect_load_error(dir, {"model.layers.0.mlp.gate_proj.weight", "[128, 64]"});
  cfg = bf16_config();
  cfg["vision_config"]["embed_dim"] = 64;
  cfg["vision_config"]["num_heads"] = 4;
  write_config(dir, cfg);
  expect_load_error(dir, {"patch_embed"});
  cfg = bf16_config();
  cfg["num_hidden_layers"] = 1;
  write_config(dir, cfg);
  expect_load_error(dir, {"num_hidden_layers"});
  cfg = bf16_config();
  cfg["vision_config"]["depth"] = 3;
  write_config(dir, cfg);
  expect_load_error(dir, {"visual.blocks.2.norm1.weight"});
  cfg = bf16_config();
  cfg["vocab_size"] = 1000;
  write_config(dir, cfg);
  expect_load_error(dir, {"model.embed_tokens.weight"});
}

TEST_F(Qwen2VLLoad, MissingOrMalformedTensors) {
  TempDir dir("missing");
  json cfg = bf16_config();
  cfg["vocab_size"] = 512;
  write_config(dir, cfg);
  write_weights(
      dir,
      [](const std::string& n, const Tensor& t) -> std::optional<std::pair<std::string, Tensor>> {
        if (n == "model.norm.weight") return std::nullopt;
        return std::make_pair(n, t);
      },
      512);
  expect_load_error(dir, {"model.norm.weight"});
  write_weights(
      dir,
      [](const std::string& n, const Tensor& t) -> std::optional<std::pair<std::string, Tensor>> {
        if (n == "visual.merger.mlp.2.bias") return std::nullopt;
        return std::make_pair(n, t);
      },
      512);
  expect_load_error(dir, {"visual.merger.mlp.2.bias"});
  write_weights(
      dir,
      [](const std::string& n, const Tensor& t) -> std::optional<std::pair<std::string, Tensor>> {
        if (n == "visual.patch_embed.proj.weight") return std::make_pair(n, t.reshape({32, 2, 3, 14, 14}));
        return std::make_pair(n, t);
      },
      512);
  expect_load_error(dir, {"visual.patch_embed.proj.weight", "[32, 2, 3, 14, 14]"});
  write_weights(
      dir,
      [](const std::string& n, const Tensor& t) -> std::optional<std::pair<std::string, Tensor>> {
        if (n.rfind("model.", 0) == 0) return std::make_pair("decoder." + n.substr(6), t);
        return std::make_pair(n, t);
      },
      512);
  expect_load_error(dir, {"embed_tokens.weight"});
  // A quantized-looking module without a quantization config.
  write_weights(dir, keep_all, 512, {{"model.layers.0.mlp.up_proj.scales", Tensor::zeros(DType::F32, {128, 1})}});
  expect_load_error(dir, {"up_proj"});
  // The reduced-vocabulary checkpoint itself loads.
  write_weights(dir, keep_all, 512);
  EXPECT_NO_THROW(Qwen2VLModel::load(Checkpoint::open(dir.str())));
}

void expect_prefill_error(const ModelInput& in, const std::string& needle) {
  auto seq = model("tiny-bf16").start(vlm::testing::test_env());
  try {
    seq->prefill(in);
    ADD_FAILURE() << "prefill succeeded, expected an error mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(Qwen2VLLoad, PadTokensMustMatchFeatures) {
  Case c = load_case("02_one_image");
  ModelInput good = stored_input(c);
  ModelInput in = good;
  in.ids.erase(std::find(in.ids.begin(), in.ids.end(), 151655));  // 15 pads for 16 feature rows
  expect_prefill_error(in, "<|image_pad|>");
  in = good;
  in.images.clear();
  in.image_grids.clear();
  expect_prefill_error(in, "<|image_pad|>");
  in = stored_input(load_case("01_text_only"));
  in.images = good.images;
  in.image_grids = good.image_grids;
  expect_prefill_error(in, "<|image_pad|>");
  in = good;
  in.image_grids[0] = {1, 8, 4};
  expect_prefill_error(in, "grid");
  in = good;
  in.images[0] = in.images[0].slice(1, 0, 1000).contiguous();
  expect_prefill_error(in, "1176");
  in = good;
  in.videos = good.images;
  in.video_grids = good.image_grids;
  expect_prefill_error(in, "<|video_pad|>");
  in = good;
  in.ids[0] = 200000;
  expect_prefill_error(in, "200000");
  EXPECT_THROW(model("tiny-bf16").start(vlm::testing::test_env())->prefill(ModelInput{}), Error);
}

// A second prefill continues the sequence: prompt split in two gives the one-shot logits.
TEST_F(Qwen2VLLoad, SplitPrefillEqualsOneShot) {
  Case c = load_case("07_multi_turn");
  ModelInput all = stored_input(c);
  const Qwen2VLModel& m = model("tiny-bf16");
  std::vector<float> once = m.start(vlm::testing::test_env())->prefill(all);
  // Split after the first image's <|vision_end|> (the first turn's items only in part 1).
  auto end1 = std::find(all.ids.begin(), all.ids.end(), 151653) + 1;
  ModelInput a, b;
  a.ids.assign(all.ids.begin(), end1);
  a.images = {all.images[0]};
  a.image_grids = {all.image_grids[0]};
  b.ids.assign(end1, all.ids.end());
  b.images = {all.images[1]};
  b.image_grids = {all.image_grids[1]};
  auto seq = m.start(vlm::testing::test_env());
  seq->prefill(a);
  std::vector<float> split = seq->prefill(b);
  EXPECT_EQ(seq->length(), int64_t(all.ids.size()));
  EXPECT_LE(max_abs_diff(once.data(), split.data(), once.size()), 1e-3f);
}

TEST_F(Qwen2VLLoad, RotatingKvWindow) {
  Case c = load_case("01_text_only");
  ModelInput in = stored_input(c);
  const Qwen2VLModel& m = model("tiny-bf16");
  const int64_t L = int64_t(in.ids.size());
  auto full = m.start(vlm::testing::test_env()), roomy = m.start(vlm::testing::test_env()),
       tight = m.start(vlm::testing::test_env());
  roomy->set_kv_window(L + 64, 4);  // never full: identical to the unbounded cache
  tight->set_kv_window(L + 8, 4);   // starts evicting after 8 decoded tokens
  std::vector<float> a = full->prefill(in), b = roomy->prefill(in), t = tight->prefill(in);
  bool diverged = false;
  for (int i = 0; i < 24; ++i) {
    int32_t next = int32_t(std::max_element(a.begin(), a.end()) - a.begin());
    EXPECT_EQ(max_abs_diff(a.data(), b.data(), a.size()), 0.f) << "step " << i;
    if (i <= 8) {
      EXPECT_EQ(max_abs_diff(a.data(), t.data(), a.size()), 0.f) << "step " << i;
    }
    if (i > 8 && max_abs_diff(a.data(), t.data(), a.size()) > 1e-3f) diverged = true;  // old rows gone
    for (float v : t) ASSERT_TRUE(std::isfinite(v));
    a = full->step(next), b = roomy->step(next), t = tight->step(next);
  }
  EXPECT_TRUE(diverged);
  EXPECT_EQ(tight->length(), L + 24);  // positions keep counting every token
}

TEST_F(Qwen2VLLoad, ChunkedPrefillEqualsOneShot) {
  Case c = load_case("03_two_images");
  ModelInput all = stored_input(c);
  const Qwen2VLModel& m = model("tiny-mlx-4bit");
  all.prefill_chunk = 0;
  std::vector<float> once = m.start(vlm::testing::test_env())->prefill(all);
  for (int64_t chunk : {1, 7, 16, 58}) {  // chunks that cut through image tokens too
    all.prefill_chunk = chunk;
    auto seq = m.start(vlm::testing::test_env());
    std::vector<float> chunked = seq->prefill(all);
    EXPECT_EQ(seq->length(), int64_t(all.ids.size()));
    EXPECT_LE(max_abs_diff(once.data(), chunked.data(), once.size()), 1e-3f) << "chunk " << chunk;
    // Decoding continues from the same state.
    auto ref = m.start(vlm::testing::test_env());
    all.prefill_chunk = 0;
    ref->prefill(all);
    EXPECT_LE(max_abs_diff(ref->step(42).data(), seq->step(42).data(), once.size()), 1e-3f) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace vlm
