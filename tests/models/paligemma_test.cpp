// PaliGemma against the float32 transformers oracle in shared/fixtures/paligemma (see its README):
// every case x model dir, fed with the stored ids and pixel values.
#include "models/paligemma/paligemma.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "io/safetensors.h"
#include "media/image.h"
#include "test_scope.h"
#include "trace_util.h"

namespace vlm {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = std::string(VLM_SHARED_DIR) + "/fixtures/paligemma";

struct CaseModel {
  std::string case_name, model_dir, prefix;
};

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
      out.push_back({f.stem().string(), dir, m["tensor_prefix"].get<std::string>()});
  }
  return out;
}

const PaliGemmaModel& model_for(const std::string& dir) {
  static std::map<std::string, std::unique_ptr<PaliGemmaModel>> models;
  auto& m = models[dir];
  if (!m) m = std::make_unique<PaliGemmaModel>(Checkpoint::open(kFixtures + "/" + dir));
  return *m;
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

std::vector<float> flatten(const std::vector<std::vector<float>>& rows) {
  std::vector<float> out;
  for (auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

using vlm::testing::Recorder;
using vlm::testing::test_env;

// The stored ids and pixel values as a model input (one bidirectional prompt, one chunk).
ModelInput stored_input(const CaseData& c) {
  ModelInput in;
  in.ids = c.ints("input_ids");
  in.images = {c.get("pixel_values")};
  in.prefill_chunk = 0;
  return in;
}

// Final-norm states of the prompt ([L, H]) through the observer.
std::vector<float> prompt_hidden(const PaliGemmaModel& model, const ModelInput& in) {
  Recorder rec;
  auto seq = model.start(test_env());
  seq->set_observer(&rec.observer);
  seq->prefill(in);
  return rec.last("decoder.norm");
}

int32_t argmax(const float* v, int64_t n) {
  return int32_t(std::max_element(v, v + n) - v);  // first maximum = lowest id on ties
}

class PaliGemmaCase : public ::testing::TestWithParam<CaseModel> {};

constexpr float kRel = 1e-4f;       // README: float32 path, every float tensor
constexpr float kLogitAbs = 2e-3f;  // README: float32 path, logits

TEST_P(PaliGemmaCase, MatchesOracleFromStoredInputs) {
  const CaseModel& cm = GetParam();
  CaseData c = load_case(cm.case_name);
  const PaliGemmaModel& model = model_for(cm.model_dir);
  const std::string& p = cm.prefix;
  std::vector<int32_t> ids = c.ints("input_ids");
  Recorder rec;
  auto seq = model.start(test_env());
  seq->set_observer(&rec.observer);
  std::vector<float> prefill_logits = seq->prefill(stored_input(c));

  std::vector<std::vector<float>> vision_states = {rec.last("vision.patch_embed")};
  for (const auto& layer : rec.all("vision.layer")) vision_states.push_back(layer);
  std::vector<std::vector<float>> lm_states = {rec.last("decoder.embeddings")};
  for (const auto& layer : rec.all("decoder.layer")) lm_states.push_back(layer);
  std::vector<float> hidden = rec.last("decoder.norm");
  expect_close("vision_embeddings", vision_states.at(0), c.floats(p + "vision_embeddings"), kRel);
  expect_close("vision_hidden_states", flatten(vision_states), c.floats(p + "vision_hidden_states"), kRel);
  expect_close("vision_last_hidden_state", rec.last("vision.out"), c.floats(p + "vision_last_hidden_state"), kRel);
  expect_close("image_features", rec.last("image_features"), c.floats(p + "image_features"), kRel);
  expect_close("lm_inputs_embeds", rec.last("decoder.input"), c.floats(p + "lm_inputs_embeds"), kRel);
  expect_close("lm_hidden_states", flatten(lm_states), c.floats(p + "lm_hidden_states"), kRel);
  expect_close("lm_final_hidden", hidden, c.floats(p + "lm_final_hidden"), kRel);

  // Logits at the last 8 prompt positions: top-64, probe columns, logsumexp.
  const int64_t H = model.config().text.hidden_size, V = model.config().text.vocab_size;
  const int64_t L = int64_t(ids.size()), rows = std::min<int64_t>(8, L);
  std::vector<float> logits(size_t(rows * V)), scratch(size_t(rows * H));
  model.decoder().head(test_env(), lm_states.back().data() + (L - rows) * H, rows, scratch.data(), logits.data());
  expect_close("prefill logits", prefill_logits, std::vector<float>(logits.end() - V, logits.end()), 1e-5f);
  auto top = c.floats(p + "logits_last8_top64");
  auto top_ids = c.ints(p + "logits_last8_top64_ids");
  auto probe = c.floats(p + "logits_last8_probe");
  auto probe_ids = c.ints("logits_probe_ids");
  auto lse = c.floats(p + "logits_last8_logsumexp");
  const int64_t off = 8 - rows;  // the fixtures pad nothing: L >= 8 in every case
  ASSERT_EQ(off, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* lr = logits.data() + r * V;
    for (int i = 0; i < 64; ++i)
      EXPECT_NEAR(lr[top_ids[size_t(r * 64 + i)]], top[size_t(r * 64 + i)], kLogitAbs) << "row " << r << " top " << i;
    EXPECT_NEAR(*std::max_element(lr, lr + V), top[size_t(r * 64)], kLogitAbs) << "row " << r;
    for (size_t i = 0; i < probe_ids.size(); ++i)
      EXPECT_NEAR(lr[probe_ids[i]], probe[size_t(r) * probe_ids.size() + i], kLogitAbs) << "row " << r;
    double mx = *std::max_element(lr, lr + V), s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(lr[v]) - mx);
    EXPECT_NEAR(mx + std::log(s), lse[size_t(r)], kLogitAbs) << "row " << r;
  }

  // Greedy decoding with the KV cache: all 16 ids exact, fed-back states and top-5 logits close.
  auto want_ids = c.ints(p + "generated_ids");
  auto gen_top5 = c.floats(p + "gen_top5");
  auto gen_top5_ids = c.ints(p + "gen_top5_ids");
  auto gen_hidden = c.floats(p + "gen_final_hidden");
  const float* last = logits.data() + (rows - 1) * V;
  std::vector<float> step_logits(last, last + V);
  std::vector<float> fed_hidden;
  for (size_t s = 0; s < want_ids.size(); ++s) {
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(step_logits[size_t(gen_top5_ids[s * 5 + i])], gen_top5[s * 5 + i], kLogitAbs) << "step " << s;
    int32_t id = argmax(step_logits.data(), V);
    ASSERT_EQ(id, want_ids[s]) << "greedy step " << s;
    step_logits = seq->step(id);
    const std::vector<float>& h = rec.last("decoder.norm");
    fed_hidden.insert(fed_hidden.end(), h.begin(), h.end());
  }
  expect_close("gen_final_hidden", fed_hidden, gen_hidden, kRel);
  EXPECT_EQ(seq->length(), L + int64_t(want_ids.size()));
}

// Cached one-token steps == one pass over the prompt plus all generated tokens (prefix block
// bidirectional, generated tokens causal), and the Sequence interface gives the same logits.
TEST_P(PaliGemmaCase, CachedDecodingEqualsFullRecompute) {
  const CaseModel& cm = GetParam();
  CaseData c = load_case(cm.case_name);
  const PaliGemmaModel& model = model_for(cm.model_dir);
  std::vector<int32_t> ids = c.ints("input_ids");
  std::vector<int32_t> gen = c.ints(cm.prefix + "generated_ids");
  const int64_t H = model.config().text.hidden_size, L = int64_t(ids.size()), G = int64_t(gen.size());

  Recorder rec;
  auto stepped = model.start(test_env());
  stepped->set_observer(&rec.observer);
  stepped->prefill(stored_input(c));
  std::vector<float> prompt_rows = rec.last("decoder.embeddings"), prompt_hidden = rec.last("decoder.norm");
  std::vector<float> step_hidden;
  for (int32_t t : gen) {
    stepped->step(t);
    const std::vector<float>& h = rec.last("decoder.norm");
    step_hidden.insert(step_hidden.end(), h.begin(), h.end());
  }

  // The same tokens in one decoder pass: [prompt | generated] with the prompt as the prefix.
  std::vector<float> x = prompt_rows;
  x.resize(size_t((L + G) * H));
  for (int64_t g = 0; g < G; ++g) model.embed_token(gen[size_t(g)], x.data() + (L + g) * H);
  nn::KVCache cache = model.decoder().make_cache();
  nn::DecoderWorkspace ws;
  const nn::DecoderSpan span{L + G, &cache, L, {}};
  model.decoder().forward(test_env(), x.data(), {&span, 1}, nn::Positions::sequential(1, L + G, false), ws);
  std::vector<float> full(size_t((L + G) * H));
  model.decoder().head(test_env(), x.data(), L + G, full.data(), nullptr);
  expect_close("prompt rows", std::vector<float>(full.begin(), full.begin() + L * H), prompt_hidden, 1e-5f);
  expect_close("generated rows", std::vector<float>(full.begin() + L * H, full.end()), step_hidden, 1e-5f);
  EXPECT_EQ(stepped->length(), L + G);
}

// Text prefilled after the prefix is causal, as generated tokens are: prefilling it (in chunks)
// equals stepping through it.
TEST_P(PaliGemmaCase, TextAfterThePrefixIsCausalAndChunkable) {
  const CaseModel& cm = GetParam();
  CaseData c = load_case(cm.case_name);
  const PaliGemmaModel& model = model_for(cm.model_dir);
  const std::vector<int32_t> suffix = c.ints(cm.prefix + "generated_ids");
  auto stepped = model.start(test_env());
  stepped->prefill(stored_input(c));
  std::vector<float> want;
  for (int32_t t : suffix) want = stepped->step(t);
  for (int64_t chunk : {int64_t(0), int64_t(3)}) {
    auto seq = model.start(test_env());
    seq->prefill(stored_input(c));
    ModelInput more;
    more.ids = suffix;
    more.prefill_chunk = chunk;
    expect_close("suffix logits, chunk " + std::to_string(chunk), seq->prefill(more), want, 1e-5f);
    EXPECT_EQ(seq->length(), stepped->length());
  }
}

std::string case_model_name(const ::testing::TestParamInfo<CaseModel>& info) {
  std::string s = info.param.case_name + "__" + info.param.model_dir;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PaliGemmaCase, ::testing::ValuesIn(test::sanitizer_share(all_case_models())),
                         case_model_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PaliGemmaCase);

TEST(PaliGemma, FixturesPresent) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  // 8 cases x 2 models + 2 pad cases x 2 models.
  EXPECT_EQ(all_case_models().size(), 20u);
}

// ---- From prompt text + image file through the processor ----

// The fixture's tokenizer files are small text files naming the shared asset (copied symlinks);
// the loaders follow them, so the directories are used as they are.
std::string resolved_dir(const std::string& dir) {
  return kFixtures + "/" + dir;
}

const Tokenizer& tokenizer_for(const std::string& dir) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> toks;
  auto& t = toks[dir];
  if (!t) t = std::make_unique<Tokenizer>(Tokenizer::from_dir(resolved_dir(dir)));
  return *t;
}

std::unique_ptr<Processor> processor_for(const std::string& dir) {
  std::string path = resolved_dir(dir);
  return make_paligemma_processor(path, tokenizer_for(dir), read_json_file(path + "/config.json"));
}

std::vector<ChatMessage> user_turn(const std::string& text, std::vector<Image> images) {
  ChatMessage m;
  m.role = "user";
  for (auto& img : images) {
    ContentPart part;
    part.kind = ContentPart::Kind::Image;
    part.image = std::move(img);
    m.content.push_back(std::move(part));
  }
  ContentPart t;
  t.text = text;
  m.content.push_back(t);
  return {m};
}

TEST(PaliGemmaProcessor, IdsAndPixelValuesMatchTheOracle) {
  auto cases = all_case_models();
  if (cases.empty()) GTEST_SKIP() << "shared fixtures absent";
  std::string last_case;
  for (const CaseModel& cm : cases) {
    if (cm.case_name == last_case) continue;  // the processor output does not depend on the weights
    last_case = cm.case_name;
    SCOPED_TRACE(cm.case_name);
    CaseData c = load_case(cm.case_name);
    Image img = load_image(kFixtures + "/" + c.meta["image"]["file"].get<std::string>());
    ModelInput in = processor_for(cm.model_dir)->prepare(user_turn(c.meta["prompt"], {img}), {});
    EXPECT_EQ(in.ids, c.ints("input_ids"));
    EXPECT_EQ(in.prompt_text, c.meta["prompt_string"].get<std::string>());
    ASSERT_EQ(in.images.size(), 1u);
    Tensor want = c.get("pixel_values");
    ASSERT_EQ(in.images[0].shape(), (Shape{3, want.dim(2), want.dim(3)}));
    // PNG decoding is exact; JPEG decoders may differ by a few LSB (README), i.e. 2/255 per LSB here.
    bool jpeg = c.meta["image"]["format"] == "JPEG";
    std::vector<float> got = in.images[0].to_floats(), ref = want.to_floats();
    float worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - ref[i]));
    EXPECT_LE(worst, jpeg ? 4 * 2.f / 255.f : 1e-6f);
  }
}

TEST(PaliGemmaProcessor, EndToEndGreedyIdsFromPromptAndImageFile) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  for (auto [case_name, dir, prefix] :
       {CaseModel{"caption_en_astronaut", "tiny-mlx-8bit", "mlx8."},
        CaseModel{"pad_detect_cat_dog_chelsea_rgba", "tiny-mlx-8bit-2024", "mlx8-2024."}}) {
    SCOPED_TRACE(case_name + " / " + dir);
    CaseData c = load_case(case_name);
    Image img = load_image(kFixtures + "/" + c.meta["image"]["file"].get<std::string>());
    ModelInput in = processor_for(dir)->prepare(user_turn(c.meta["prompt"], {img}), {});
    const PaliGemmaModel& model = model_for(dir);
    std::unique_ptr<Sequence> seq = model.start(test_env());
    std::vector<float> logits = seq->prefill(in);
    std::vector<int32_t> ids;
    for (int s = 0; s < 16; ++s) {
      ids.push_back(argmax(logits.data(), int64_t(logits.size())));
      logits = seq->step(ids.back());
    }
    EXPECT_EQ(ids, c.ints(prefix + "generated_ids"));
    EXPECT_EQ(tokenizer_for(dir).decode(ids), c.meta["models"][dir]["generated_text"].get<std::string>());
  }
}

TEST(PaliGemmaProcessor, RejectsZeroOrTwoImagesAndVideo) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  auto proc = processor_for("tiny-bf16");
  Image img;
  img.width = img.height = 20;
  img.rgb.assign(20 * 20 * 3, 7);
  EXPECT_THROW(proc->prepare(user_turn("caption en", {}), {}), Error);
  EXPECT_THROW(proc->prepare(user_turn("caption en", {img, img}), {}), Error);
  auto msgs = user_turn("caption en", {img});
  ContentPart video;
  video.kind = ContentPart::Kind::Video;
  video.frames = {img};
  msgs[0].content.push_back(video);
  EXPECT_THROW(proc->prepare(msgs, {}), Error);
  // Text parts of the last user turn are concatenated; earlier turns are not part of the prompt.
  auto two = user_turn("ignored", {});
  auto last = user_turn("caption ", {img});
  ContentPart more;
  more.text = "en";
  last[0].content.push_back(more);
  two.push_back(last[0]);
  ModelInput in = proc->prepare(two, {});
  std::vector<int32_t> tail(in.ids.end() - 3, in.ids.end());
  EXPECT_EQ(tail, (std::vector<int32_t>{21209, 659, 108}));  // "caption en\n"
  EXPECT_EQ(in.ids.size(), 20u);
}

// ---- Bad input to the model ----

TEST(PaliGemma, RejectsImageTokenCountAndPixelShapeMismatch) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  const PaliGemmaModel& model = model_for("tiny-bf16");
  std::vector<int32_t> ids(16, 257152);
  ids.insert(ids.end(), {2, 21209, 659, 108});
  Tensor px = Tensor::zeros(DType::F32, {3, 56, 56});
  auto prefill = [&](std::vector<int32_t> prompt, std::vector<Tensor> images) {
    ModelInput in;
    in.ids = std::move(prompt);
    in.images = std::move(images);
    return model.start(test_env())->prefill(in);
  };
  EXPECT_THROW(prefill(ids, {}), Error);
  EXPECT_THROW(prefill(ids, {px, px}), Error);
  EXPECT_THROW(prefill(ids, {Tensor::zeros(DType::F32, {3, 64, 64})}), Error);
  EXPECT_THROW(prefill({2, 300000}, {}), Error);          // id outside the vocabulary
  EXPECT_THROW(model.start(test_env())->step(5), Error);  // step before prefill
  EXPECT_NO_THROW(prefill(ids, {px}));
}

// transformers >= 4.52 key names (model.vision_tower / model.multi_modal_projector /
// model.language_model + a top-level lm_head) load to the same model.
TEST(PaliGemma, LoadsNewTransformersKeyNames) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  fs::path tmp = fs::temp_directory_path() / ("vlm_paligemma_newnames_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const std::string src = kFixtures + "/tiny-pad-bf16";
  fs::copy_file(src + "/config.json", tmp / "config.json");
  {
    auto st = SafetensorsFile::open(src + "/model.safetensors");
    std::vector<std::pair<std::string, Tensor>> renamed;
    for (auto& [name, entry] : st->entries()) {
      std::string n = name;
      if (n.rfind("language_model.model.", 0) == 0)
        n = "model.language_model." + n.substr(21);
      else
        n = "model." + n;
      renamed.push_back({n, st->tensor(name)});
      if (name == "language_model.model.embed_tokens.weight") renamed.push_back({"lm_head.weight", st->tensor(name)});
    }
    save_safetensors((tmp / "model.safetensors").string(), renamed, {{"format", "pt"}});
  }
  CaseData c = load_case("pad_caption_en_astronaut");
  std::vector<float> got, want;
  {
    PaliGemmaModel renamed(Checkpoint::open(tmp.string()));
    got = prompt_hidden(renamed, stored_input(c));
  }
  want = prompt_hidden(model_for("tiny-pad-bf16"), stored_input(c));
  EXPECT_EQ(got, want);
  expect_close("lm_final_hidden", got, c.floats("pad-bf16.lm_final_hidden"), kRel);
  fs::remove_all(tmp);
}

// A model dir whose config.json disagrees with the tensors must fail to load, naming the problem.
TEST(PaliGemma, RejectsConfigTensorShapeMismatch) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  fs::path tmp = fs::temp_directory_path() / ("vlm_paligemma_bad_" + std::to_string(::getpid()));
  struct Edit {
    std::string section, key;
    json value;
    std::string expect;  // substring of the error
  };
  for (const Edit& e : {Edit{"vision_config", "hidden_size", 48, "patch_embedding"},
                        Edit{"vision_config", "intermediate_size", 136, "fc1"},
                        Edit{"text_config", "intermediate_size", 96, "gate_proj"},
                        Edit{"text_config", "num_key_value_heads", 2, "k_proj"},
                        Edit{"vision_config", "image_size", 84, "position_embedding"},
                        Edit{"text_config", "num_attention_heads", 3, "q_proj"}}) {
    for (const std::string src : {"tiny-bf16", "tiny-mlx-8bit-2024"}) {
      SCOPED_TRACE(src + ": " + e.section + "." + e.key);
      fs::remove_all(tmp);
      fs::create_directories(tmp);
      json cfg = read_json_file(kFixtures + "/" + src + "/config.json");
      cfg[e.section][e.key] = e.value;
      std::ofstream(tmp / "config.json") << cfg.dump();
      fs::create_symlink(fs::absolute(kFixtures + "/" + src + "/model.safetensors"), tmp / "model.safetensors");
      try {
        PaliGemmaModel m(Checkpoint::open(tmp.string()));
        ADD_FAILURE() << "loaded despite the mismatch";
      } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find(e.expect), std::string::npos) << err.what();
      }
    }
  }
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace vlm
