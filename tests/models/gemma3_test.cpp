// Gemma 3 against the float32 transformers oracle in shared/fixtures/gemma3 (see its README):
// every case x model dir, from the stored ids and pixel values (every intermediate tensor) and from
// the chat messages and image files through the processor (ids, pixel values, greedy tokens).
#include "models/gemma3/gemma3.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <ostream>

#include "io/safetensors.h"
#include "media/image.h"
#include "test_scope.h"
#include "trace_util.h"

namespace vlm {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = std::string(VLM_SHARED_DIR) + "/fixtures/gemma3";

struct CaseModel {
  std::string case_name, model_dir, prefix, vision_prefix;
};

void PrintTo(const CaseModel& c, std::ostream* os) {
  *os << c.case_name << " / " << c.model_dir;
}

std::vector<CaseModel> all_case_models() {
  std::vector<CaseModel> out;
  if (!fs::exists(kFixtures + "/cases")) return out;
  std::vector<fs::path> files;
  for (auto& e : fs::directory_iterator(kFixtures + "/cases"))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (auto& f : files) {
    json j = read_json_file(f.string());
    for (auto& [dir, m] : j["models"].items())
      out.push_back({f.stem().string(), dir, m["tensor_prefix"].get<std::string>(),
                     m["vision_tensor_prefix"].is_string() ? m["vision_tensor_prefix"].get<std::string>() : ""});
  }
  return out;
}

struct Loaded {
  std::unique_ptr<Gemma3Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Processor> processor;
};

const Loaded& load(const std::string& dir) {
  static std::map<std::string, Loaded> cache;
  Loaded& l = cache[dir];
  if (!l.model) {
    const std::string path = kFixtures + "/" + dir;
    l.model = std::make_unique<Gemma3Model>(Checkpoint::open(path));
    l.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_dir(path));
    l.processor = make_gemma3_processor(path, *l.tokenizer, read_json_file(path + "/config.json"));
  }
  return l;
}

struct CaseData {
  json meta;
  std::shared_ptr<SafetensorsFile> tensors;
  Tensor get(const std::string& name) const { return tensors->tensor(name); }
  std::vector<float> floats(const std::string& name) const { return get(name).to_floats(); }
  std::vector<int32_t> ints(const std::string& name) const {
    auto v = get(name).to_ints();
    return {v.begin(), v.end()};
  }
};

CaseData load_case(const std::string& name) {
  CaseData c;
  c.meta = read_json_file(kFixtures + "/cases/" + name + ".json");
  c.tensors = SafetensorsFile::open(kFixtures + "/cases/" + name + ".safetensors");
  return c;
}

float max_abs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// max|got - ref| <= rel * max|ref|
void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref, float rel) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  float worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - ref[i]));
  EXPECT_LE(worst, rel * max_abs(ref)) << what << ": max|diff| " << worst << ", max|ref| " << max_abs(ref);
}

std::vector<float> flatten(const std::vector<std::vector<float>>& rows, size_t first = 0, size_t step = 1) {
  std::vector<float> out;
  for (size_t i = first; i < rows.size(); i += step) out.insert(out.end(), rows[i].begin(), rows[i].end());
  return out;
}

int32_t argmax(const float* v, int64_t n) {
  return int32_t(std::max_element(v, v + n) - v);  // first maximum = lowest id on ties
}

using vlm::testing::Recorder;
using vlm::testing::test_env;

// The case's messages with its image files, as the processor receives them.
std::vector<ChatMessage> case_messages(const CaseData& c) {
  std::vector<ChatMessage> out;
  size_t image = 0;
  for (const json& m : c.meta["messages"]) {
    ChatMessage msg;
    msg.role = m["role"];
    auto add_text = [&](const std::string& t) {
      ContentPart p;
      p.text = t;
      msg.content.push_back(p);
    };
    if (m["content"].is_string())
      add_text(m["content"]);
    else
      for (const json& part : m["content"]) {
        if (part["type"] == "text") {
          add_text(part["text"]);
        } else {
          ContentPart p;
          p.kind = ContentPart::Kind::Image;
          p.image = load_image(kFixtures + "/" + c.meta["images"][image++]["file"].get<std::string>());
          msg.content.push_back(p);
        }
      }
    out.push_back(msg);
  }
  return out;
}

ModelInput stored_input(const CaseData& c) {
  ModelInput in;
  in.ids = c.ints("input_ids");
  if (c.tensors->contains("pixel_values")) {
    const Tensor px = c.get("pixel_values");
    const std::vector<float> all = px.to_floats();
    const int64_t n = px.dim(0), per = int64_t(all.size()) / n;
    for (int64_t i = 0; i < n; ++i)
      in.images.push_back(
          Tensor::from_floats({all.begin() + i * per, all.begin() + (i + 1) * per}, {px.dim(1), px.dim(2), px.dim(3)}));
  }
  in.prefill_chunk = 0;
  return in;
}

class Gemma3Case : public ::testing::TestWithParam<CaseModel> {};

constexpr float kRel = 1e-4f;       // README: float32 path, every float tensor
constexpr float kLogitAbs = 2e-3f;  // README: float32 path, logits

TEST_P(Gemma3Case, MatchesOracleFromStoredInputs) {
  const CaseModel& cm = GetParam();
  const CaseData c = load_case(cm.case_name);
  const Gemma3Model& model = *load(cm.model_dir).model;
  const std::string& p = cm.prefix;
  const std::vector<int32_t> ids = c.ints("input_ids");
  const ModelInput in = stored_input(c);
  Recorder rec;
  auto seq = model.start(test_env());
  seq->set_observer(&rec.observer);
  std::vector<float> prefill_logits = seq->prefill(in);

  if (!cm.vision_prefix.empty()) {
    const std::string& v = cm.vision_prefix;
    const size_t n = in.images.size(), layers = size_t(model.config().vision.num_layers);
    // Per image: the embeddings, then every layer; stored [n_img, Lv+1, N, Dv].
    std::vector<std::vector<float>> states;
    for (size_t i = 0; i < n; ++i) {
      states.push_back(rec.all("vision.patch_embed")[i]);
      for (size_t l = 0; l < layers; ++l) states.push_back(rec.all("vision.layer")[i * layers + l]);
    }
    expect_close("vision_hidden_states", flatten(states), c.floats(v + "vision_hidden_states"), kRel);
    expect_close("vision_last_hidden_state", flatten(rec.all("vision.out")), c.floats(v + "vision_last_hidden_state"),
                 kRel);
    expect_close("mm_pooled", flatten(rec.all("mm.pooled")), c.floats(v + "mm_pooled"), kRel);
    expect_close("mm_normed", flatten(rec.all("mm.normed")), c.floats(v + "mm_normed"), kRel);
    expect_close("image_features", flatten(rec.all("image_features")), c.floats(v + "image_features"), kRel);
  } else {
    EXPECT_FALSE(rec.has("vision.out"));
  }
  std::vector<std::vector<float>> lm_states = {rec.last("decoder.embeddings")};
  for (const auto& layer : rec.all("decoder.layer")) lm_states.push_back(layer);
  expect_close("lm_hidden_states", flatten(lm_states), c.floats(p + "lm_hidden_states"), kRel);
  expect_close("lm_final_hidden", rec.last("decoder.norm"), c.floats(p + "lm_final_hidden"), kRel);

  // Logits at the last 8 prompt positions: top-64, probe columns, logsumexp.
  const int64_t H = model.config().text.hidden_size, V = model.config().text.vocab_size;
  const int64_t L = int64_t(ids.size()), rows = 8;
  ASSERT_GE(L, rows);
  std::vector<float> logits(size_t(rows * V)), scratch(size_t(rows * H));
  model.decoder().head(test_env(), lm_states.back().data() + (L - rows) * H, rows, scratch.data(), logits.data());
  expect_close("prefill logits", prefill_logits, std::vector<float>(logits.end() - V, logits.end()), 1e-5f);
  const auto top = c.floats(p + "logits_last8_top64");
  const auto top_ids = c.ints(p + "logits_last8_top64_ids");
  const auto probe = c.floats(p + "logits_last8_probe");
  const auto probe_ids = c.ints("logits_probe_ids");
  const auto lse = c.floats(p + "logits_last8_logsumexp");
  for (int64_t r = 0; r < rows; ++r) {
    const float* lr = logits.data() + r * V;
    for (int i = 0; i < 64; ++i)
      EXPECT_NEAR(lr[top_ids[size_t(r * 64 + i)]], top[size_t(r * 64 + i)], kLogitAbs) << "row " << r << " top " << i;
    EXPECT_NEAR(*std::max_element(lr, lr + V), top[size_t(r * 64)], kLogitAbs) << "row " << r;
    for (size_t i = 0; i < probe_ids.size(); ++i)
      EXPECT_NEAR(lr[probe_ids[i]], probe[size_t(r) * probe_ids.size() + i], kLogitAbs) << "row " << r;
    double mx = *std::max_element(lr, lr + V), s = 0;
    for (int64_t t = 0; t < V; ++t) s += std::exp(double(lr[t]) - mx);
    EXPECT_NEAR(mx + std::log(s), lse[size_t(r)], kLogitAbs) << "row " << r;
  }

  // Greedy decoding with the KV cache: all 16 ids exact, fed-back states and top-5 logits close.
  const auto want_ids = c.ints(p + "generated_ids");
  const auto gen_top5 = c.floats(p + "gen_top5");
  const auto gen_top5_ids = c.ints(p + "gen_top5_ids");
  std::vector<float> step_logits = prefill_logits, fed_hidden;
  for (size_t s = 0; s < want_ids.size(); ++s) {
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(step_logits[size_t(gen_top5_ids[s * 5 + i])], gen_top5[s * 5 + i], kLogitAbs) << "step " << s;
    const int32_t id = argmax(step_logits.data(), V);
    ASSERT_EQ(id, want_ids[s]) << "greedy step " << s;
    step_logits = seq->step(id);
    const std::vector<float>& h = rec.last("decoder.norm");
    fed_hidden.insert(fed_hidden.end(), h.begin(), h.end());
  }
  expect_close("gen_final_hidden", fed_hidden, c.floats(p + "gen_final_hidden"), kRel);
}

// Chunked prefill (chunks that would split an image block are moved to its edge) gives the
// one-shot logits, and the decode after it continues the same.
TEST_P(Gemma3Case, ChunkedPrefillKeepsImageBlocksWhole) {
  const CaseModel& cm = GetParam();
  const CaseData c = load_case(cm.case_name);
  const Gemma3Model& model = *load(cm.model_dir).model;
  ModelInput in = stored_input(c);
  const int64_t V = model.config().text.vocab_size;
  const auto want_ids = c.ints(cm.prefix + "generated_ids");
  for (int64_t chunk : {1, 4, 7}) {
    in.prefill_chunk = chunk;
    auto seq = model.start(test_env());
    std::vector<float> logits = seq->prefill(in);
    for (size_t s = 0; s < 4; ++s) {
      const int32_t id = argmax(logits.data(), V);
      ASSERT_EQ(id, want_ids[s]) << "chunk " << chunk << " step " << s;
      logits = seq->step(id);
    }
  }
}

std::string case_model_name(const ::testing::TestParamInfo<CaseModel>& info) {
  std::string s = info.param.case_name + "_" + info.param.model_dir;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Gemma3Case, ::testing::ValuesIn(test::sanitizer_share(all_case_models())),
                         case_model_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Gemma3Case);

TEST(Gemma3, FixturesPresent) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  EXPECT_EQ(all_case_models().size(), 12u);  // 6 cases x 2 model directories
  // The same weights in both layouts count the same (the MLX lm_head copy is not a parameter).
  EXPECT_EQ(load("tiny-bf16").model->info().num_parameters, load("tiny-mlx-4bit").model->info().num_parameters);
}

// Messages + image files -> prompt string, ids, pixel values of the oracle.
TEST(Gemma3Processor, IdsAndPixelValuesMatchTheOracle) {
  auto cases = all_case_models();
  if (cases.empty()) GTEST_SKIP() << "shared fixtures absent";
  for (const CaseModel& cm : cases) {
    SCOPED_TRACE(cm.case_name + " / " + cm.model_dir);
    const CaseData c = load_case(cm.case_name);
    const ModelInput in = load(cm.model_dir).processor->prepare(case_messages(c), {});
    EXPECT_EQ(in.prompt_text, c.meta["prompt_string"].get<std::string>());
    EXPECT_EQ(in.ids, c.ints("input_ids"));
    const ModelInput want = stored_input(c);
    ASSERT_EQ(in.images.size(), want.images.size());
    for (size_t i = 0; i < in.images.size(); ++i) {
      ASSERT_EQ(in.images[i].shape(), want.images[i].shape());
      // PNG decoding is exact; JPEG decoders may differ by a few LSB (README): 2/255 per LSB here.
      const bool jpeg = c.meta["images"][i]["format"] == "JPEG";
      std::vector<float> got = in.images[i].to_floats(), ref = want.images[i].to_floats();
      float worst = 0;
      for (size_t k = 0; k < got.size(); ++k) worst = std::max(worst, std::fabs(got[k] - ref[k]));
      EXPECT_LE(worst, jpeg ? 4 * 2.f / 255.f : 1e-6f) << "image " << i;
    }
  }
}

TEST(Gemma3Processor, ImageCountMustMatchTheTemplate) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  const Loaded& l = load("tiny-bf16");
  ChatMessage m;
  m.role = "user";
  ContentPart t;
  t.text = "Look: <start_of_image>";  // typed by the user, no image behind it
  m.content.push_back(t);
  EXPECT_THROW(l.processor->prepare({m}, {}), Error);
  ModelInput in = l.processor->prepare({ChatMessage{"user", {ContentPart{ContentPart::Kind::Text, "hi", {}, {}}}}}, {});
  in.images.push_back(Tensor::from_floats(std::vector<float>(3 * 84 * 84), {3, 84, 84}));
  auto seq = l.model->start(test_env());
  EXPECT_THROW(seq->prefill(in), Error);  // an image without soft tokens
}

}  // namespace
}  // namespace vlm

namespace vlm {
namespace {

json fixture_config() {
  return read_json_file(kFixtures + "/tiny-bf16/config.json");
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Gemma3Config, LayerKindsAndRopeFromEitherSpelling) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  json cfg = fixture_config();
  const std::vector<bool> ssg = {true, true, false, true, true, false};
  EXPECT_EQ(Gemma3Config::from_json(cfg, "c").text.sliding, ssg);
  cfg["text_config"].erase("layer_types");  // sliding_window_pattern 3 says the same
  EXPECT_EQ(Gemma3Config::from_json(cfg, "c").text.sliding, ssg);
  cfg["text_config"].erase("sliding_window_pattern");  // transformers' default pattern 6
  EXPECT_EQ(Gemma3Config::from_json(cfg, "c").text.sliding, (std::vector<bool>{true, true, true, true, true, false}));
  const nn::DecoderConfig d = Gemma3Config::from_json(fixture_config(), "c").decoder_config();
  ASSERT_EQ(d.ropes.size(), 2u);
  EXPECT_EQ(d.ropes[0].theta, 1e6);  // global layers: rope_theta, linear scaling
  EXPECT_EQ(d.ropes[0].linear_factor, 8.0);
  EXPECT_EQ(d.ropes[1].theta, 1e4);  // local layers: rope_local_base_freq, unscaled
  EXPECT_EQ(d.ropes[1].linear_factor, 1.0);
  EXPECT_EQ(d.layer(0).window, 20);
  EXPECT_EQ(d.layer(2).window, 0);
  EXPECT_FLOAT_EQ(d.query_scale, 1.0f / std::sqrt(24.0f));
  // transformers v5 spelling.
  json v5 = fixture_config();
  for (const char* k : {"rope_theta", "rope_local_base_freq", "rope_scaling"}) v5["text_config"].erase(k);
  v5["text_config"]["rope_parameters"] = {
      {"full_attention", {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 5e5}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 2e4}}}};
  const nn::DecoderConfig d5 = Gemma3Config::from_json(v5, "c").decoder_config();
  EXPECT_EQ(d5.ropes[0].theta, 5e5);
  EXPECT_EQ(d5.ropes[0].linear_factor, 4.0);
  EXPECT_EQ(d5.ropes[1].theta, 2e4);
}

TEST(Gemma3Config, BadFieldsAreNamed) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  auto with = [](const std::function<void(json&)>& edit) {
    json cfg = fixture_config();
    edit(cfg);
    return error_of([&] { Gemma3Config::from_json(cfg, "cfg.json"); });
  };
  EXPECT_NE(with([](json& c) { c["text_config"]["layer_types"].erase(0); }).find("layer_types"), std::string::npos);
  EXPECT_NE(with([](json& c) { c["text_config"]["layer_types"][1] = "chunked"; }).find("layer_types"),
            std::string::npos);
  EXPECT_NE(with([](json& c) { c["text_config"]["rope_scaling"]["rope_type"] = "yarn"; }).find("yarn"),
            std::string::npos);
  EXPECT_NE(with([](json& c) { c["mm_tokens_per_image"] = 10; }).find("mm_tokens_per_image"), std::string::npos);
  EXPECT_NE(with([](json& c) { c["mm_tokens_per_image"] = 16; }).find("mm_tokens_per_image"), std::string::npos);
  EXPECT_NE(with([](json& c) { c["text_config"]["sliding_window"] = 0; }).find("sliding_window"), std::string::npos);
  EXPECT_NE(with([](json& c) { c["image_token_index"] = 300000; }).find("image_token_index"), std::string::npos);
  EXPECT_NE(with([](json& c) { c["vision_config"]["image_size"] = 90; }).find("image_size"), std::string::npos);
  // Gemma 3 has no attention soft-capping; a config asking for it is refused at load.
  json capped = fixture_config();
  capped["text_config"]["attn_logit_softcapping"] = 50.0;
  EXPECT_NE(error_of([&] { Gemma3Config::from_json(capped, "c").decoder_config().validate("c"); }).find("soft-capping"),
            std::string::npos);
}

// A model directory whose preprocessor asks for pan-and-scan (not supported) is refused by name.
TEST(Gemma3Processor, PanAndScanIsRefused) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  const fs::path dir = fs::temp_directory_path() / ("gemma3-pan-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  json pre = read_json_file(kFixtures + "/tiny-bf16/preprocessor_config.json");
  pre["do_pan_and_scan"] = true;
  std::ofstream(dir / "preprocessor_config.json") << pre.dump();
  const Loaded& l = load("tiny-bf16");
  const std::string err = error_of([&] { make_gemma3_processor(dir.string(), *l.tokenizer, fixture_config()); });
  EXPECT_NE(err.find("do_pan_and_scan"), std::string::npos) << err;
  pre["do_pan_and_scan"] = nullptr;
  pre["image_seq_length"] = 256;
  std::ofstream(dir / "preprocessor_config.json") << pre.dump();
  EXPECT_NE(
      error_of([&] { make_gemma3_processor(dir.string(), *l.tokenizer, fixture_config()); }).find("image_seq_length"),
      std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vlm
