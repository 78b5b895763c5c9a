// PaliGemma against the float32 transformers oracle in shared/fixtures/paligemma (see its README):
// every case x model dir, fed with the stored ids and pixel values.
#include "models/paligemma.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "io/safetensors.h"

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
void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref,
                  float rel) {
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

int32_t argmax(const float* v, int64_t n) {
  return int32_t(std::max_element(v, v + n) - v);  // first maximum = lowest id on ties
}

class PaliGemmaCase : public ::testing::TestWithParam<CaseModel> {};

constexpr float kRel = 1e-4f;      // README: float32 path, every float tensor
constexpr float kLogitAbs = 2e-3f;  // README: float32 path, logits

TEST_P(PaliGemmaCase, MatchesOracleFromStoredInputs) {
  const CaseModel& cm = GetParam();
  CaseData c = load_case(cm.case_name);
  const PaliGemmaModel& model = model_for(cm.model_dir);
  const std::string& p = cm.prefix;
  std::vector<int32_t> ids = c.ints("input_ids");
  auto seq = std::make_unique<PaliGemmaSequence>(model);
  PaliGemmaTrace tr;
  std::vector<float> hidden = seq->prefill_hidden(ids, {c.get("pixel_values")}, &tr);

  expect_close("vision_embeddings", tr.vision_hidden_states.at(0), c.floats(p + "vision_embeddings"), kRel);
  expect_close("vision_hidden_states", flatten(tr.vision_hidden_states), c.floats(p + "vision_hidden_states"), kRel);
  expect_close("vision_last_hidden_state", tr.vision_last_hidden_state, c.floats(p + "vision_last_hidden_state"),
               kRel);
  expect_close("image_features", tr.image_features, c.floats(p + "image_features"), kRel);
  expect_close("lm_inputs_embeds", tr.inputs_embeds, c.floats(p + "lm_inputs_embeds"), kRel);
  expect_close("lm_hidden_states", flatten(tr.lm_hidden_states), c.floats(p + "lm_hidden_states"), kRel);
  expect_close("lm_final_hidden", hidden, c.floats(p + "lm_final_hidden"), kRel);

  // Logits at the last 8 prompt positions: top-64, probe columns, logsumexp.
  const int64_t H = model.config().text.hidden_size, V = model.config().text.vocab_size;
  const int64_t L = int64_t(ids.size()), rows = std::min<int64_t>(8, L);
  std::vector<float> logits = model.logits(hidden.data() + (L - rows) * H, rows);
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
    std::vector<float> h = seq->step_hidden(id);
    fed_hidden.insert(fed_hidden.end(), h.begin(), h.end());
    step_logits = model.logits(h.data(), 1);
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

  PaliGemmaSequence stepped(model);
  std::vector<float> prompt_hidden = stepped.prefill_hidden(ids, {c.get("pixel_values")});
  std::vector<float> step_hidden;
  for (int32_t t : gen) {
    auto h = stepped.step_hidden(t);
    step_hidden.insert(step_hidden.end(), h.begin(), h.end());
  }

  // The same tokens in one decoder call: [prompt | generated] with the prompt as prefix.
  PaliGemmaSequence probe(model);
  PaliGemmaTrace tr;
  probe.prefill_hidden(ids, {c.get("pixel_values")}, &tr);
  std::vector<float> x = tr.inputs_embeds;
  std::vector<float> g = model.embed(gen);
  x.insert(x.end(), g.begin(), g.end());
  for (float& v : x) v *= model.embed_normalizer();
  nn::KVCache cache = model.new_cache();
  std::vector<float> full(size_t((L + G) * H));
  model.decode(x, L + G, cache, L, full.data());
  expect_close("prompt rows", std::vector<float>(full.begin(), full.begin() + L * H), prompt_hidden, 1e-5f);
  expect_close("generated rows", std::vector<float>(full.begin() + L * H, full.end()), step_hidden, 1e-5f);

  // Sequence interface: prefill logits = last prompt row, step logits = the fed-back state.
  ModelInput in;
  in.ids = ids;
  in.images = {c.get("pixel_values").reshape({3, c.get("pixel_values").dim(2), c.get("pixel_values").dim(3)})};
  std::unique_ptr<Sequence> seq = model.start();
  std::vector<float> l0 = seq->prefill(in);
  expect_close("prefill logits", l0, model.logits(prompt_hidden.data() + (L - 1) * H, 1), 1e-5f);
  std::vector<float> l1 = seq->step(gen[0]);
  expect_close("step logits", l1, model.logits(step_hidden.data(), 1), 1e-5f);
  EXPECT_EQ(seq->length(), L + 1);
}

std::string case_model_name(const ::testing::TestParamInfo<CaseModel>& info) {
  std::string s = info.param.case_name + "__" + info.param.model_dir;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PaliGemmaCase, ::testing::ValuesIn(all_case_models()), case_model_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PaliGemmaCase);

TEST(PaliGemma, FixturesPresent) {
  if (!fs::exists(kFixtures)) GTEST_SKIP() << "shared fixtures absent";
  // 8 cases x 2 models + 2 pad cases x 2 models.
  EXPECT_EQ(all_case_models().size(), 20u);
}

}  // namespace
}  // namespace vlm
