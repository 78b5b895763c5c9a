// LoRA adapters (MLX and PEFT formats) against the oracle fixtures of shared/fixtures/lora: every
// adapter on every base model, four Qwen2-VL cases each — logits, hidden states, per-layer residual
// stream, 16 greedy tokens; the resolved module table; the fused deltas; and bad adapters.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "qwen2_vl_fixtures.h"
#include "trace_util.h"

namespace vlm {
namespace {

namespace fs = std::filesystem;
using namespace qwen2vl_test;
using vlm::testing::forward_trace;
using vlm::testing::test_env;

std::string lora_dir() {
  return shared_dir() + "/fixtures/lora";
}
bool have_lora_fixtures() {
  return fs::is_directory(lora_dir() + "/expected") && have_fixtures();
}
const std::vector<std::string>& adapter_names() {
  static const std::vector<std::string> names = {"mlx-qproj-vproj", "mlx-all-last1", "mlx-vlm-fullkeys", "peft-qv",
                                                 "peft-rslora-regex"};
  return names;
}
const std::vector<std::string>& lora_cases() {
  static const std::vector<std::string> names = {"01_text_only", "02_one_image", "06_video_4frames", "07_multi_turn"};
  return names;
}

std::shared_ptr<const nn::LoraAdapter> adapter(const std::string& name, const std::string& base) {
  static std::map<std::string, std::shared_ptr<const nn::LoraAdapter>> cache;
  auto& slot = cache[name + "@" + base];
  if (!slot) slot = model(base).load_adapter(lora_dir() + "/" + name);
  return slot;
}

class LoraCase : public ::testing::TestWithParam<std::tuple<std::string, std::string, std::string>> {
 protected:
  void SetUp() override {
    if (!have_lora_fixtures()) GTEST_SKIP() << "no fixtures at " << lora_dir();
  }
};

TEST_P(LoraCase, MatchesOracle) {
  auto [adapter_name, model_name, case_name] = GetParam();
  const Qwen2VLModel& m = model(model_name);
  auto exp = SafetensorsFile::open(lora_dir() + "/expected/" + adapter_name + ".safetensors");
  const std::string p = model_name + "." + case_name + ".";
  ModelInput in = stored_input(load_case(case_name));
  const nn::LoraSet set = {{adapter(adapter_name, model_name), 1.f}};
  const int64_t L = int64_t(in.ids.size()), H = m.config().hidden_size, V = m.config().vocab_size;

  vlm::testing::ForwardTrace t = forward_trace(m, in, 8, test_env(), set);
  std::vector<float> layers = exp->tensor(p + "layer_out_last8").to_floats();
  const auto& layer_out = t.rec.all("decoder.layer");
  ASSERT_EQ(layer_out.size(), size_t(m.config().num_layers));
  for (size_t l = 0; l < layer_out.size(); ++l)
    EXPECT_LE(max_abs_diff(layer_out[l].data() + (L - 8) * H, layers.data() + l * 8 * H, size_t(8 * H)), 1e-3f)
        << "layer " << l;
  std::vector<float> hidden = exp->tensor(p + "hidden_last8").to_floats();
  EXPECT_LE(max_abs_diff(t.rec.last("decoder.norm").data() + (L - 8) * H, hidden.data(), size_t(8 * H)), 1e-3f);
  std::vector<int64_t> cols = exp->tensor(case_name + ".logits_cols").to_ints();
  std::vector<float> want = exp->tensor(p + "logits_last8").to_floats();
  std::vector<int64_t> argmax = exp->tensor(p + "logits_last8_argmax").to_ints();
  std::vector<float> want_max = exp->tensor(p + "logits_last8_max").to_floats();
  float worst = 0;
  for (int64_t r = 0; r < 8; ++r) {
    const float* row = t.logits.data() + r * V;
    for (size_t j = 0; j < cols.size(); ++j)
      worst = std::max(worst, std::abs(row[cols[j]] - want[size_t(r) * cols.size() + j]));
    const float* best = std::max_element(row, row + V);
    EXPECT_EQ(best - row, argmax[size_t(r)]) << "argmax of row " << r;
    EXPECT_NEAR(*best, want_max[size_t(r)], 2e-3f) << "max of row " << r;
  }
  EXPECT_LE(worst, 2e-3f) << "logits_last8";

  // 16 greedy steps with the cache, then a batched step beside a base-model sequence: neither sees
  // the other's adapter.
  auto seq = m.start(test_env());
  seq->set_adapters(set);
  auto base = m.start(test_env());
  std::vector<float> logits = seq->prefill(in);
  std::vector<float> base_logits = base->prefill(in);
  std::vector<int64_t> ids;
  for (int i = 0; i < 16; ++i) {
    ids.push_back(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (i == 15) break;
    if (i == 8) {
      const int32_t base_tok = int32_t(std::max_element(base_logits.begin(), base_logits.end()) - base_logits.begin());
      auto alone = m.start(test_env());
      alone->prefill(in);
      std::vector<float> base_alone = alone->step(base_tok);
      Sequence* both[] = {seq.get(), base.get()};
      const int32_t toks[] = {int32_t(ids.back()), base_tok};
      auto out = m.step_batch(both, toks);
      logits = out[0];
      EXPECT_LE(max_abs_diff(out[1].data(), base_alone.data(), base_alone.size()), 1e-4f) << "base beside adapter";
      continue;
    }
    logits = seq->step(int32_t(ids.back()));
  }
  EXPECT_EQ(ids, exp->tensor(p + "generated_ids").to_ints());
}

std::string case_label(const ::testing::TestParamInfo<LoraCase::ParamType>& info) {
  std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param) + "_" + std::get<2>(info.param);
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(All, LoraCase,
                         ::testing::Combine(::testing::ValuesIn(adapter_names()),
                                            ::testing::Values("tiny-bf16", "tiny-mlx-4bit"),
                                            ::testing::ValuesIn(lora_cases())),
                         case_label);

// Fast precision (bf16 / int8 activations) with an adapter follows the exact path with it, within
// the bound of conformance_test.cpp's FastFidelity (NMSE of the logits <= 1e-3).
TEST_P(LoraCase, FastPrecisionFollowsExact) {
  auto [adapter_name, model_name, case_name] = GetParam();
  if (case_name != "02_one_image") GTEST_SKIP() << "one case per adapter and model";
  static std::map<std::string, std::unique_ptr<Qwen2VLModel>> fast_models;
  const Compute fast_env = Compute::make(2, Precision::kFast);
  auto& fast = fast_models[model_name];
  if (!fast) {
    fast = Qwen2VLModel::load(Checkpoint::open(fixture_dir() + "/" + model_name));
    fast->prepare(fast_env);
  }
  const ModelInput in = stored_input(load_case(case_name));
  const nn::LoraSet set = {{adapter(adapter_name, model_name), 1.f}};
  auto exact_seq = model(model_name).start(test_env());
  auto fast_seq = fast->start(fast_env);
  exact_seq->set_adapters(set);
  fast_seq->set_adapters(set);
  const std::vector<float> e = exact_seq->prefill(in), f = fast_seq->prefill(in);
  double err = 0, norm = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    err += (double(f[i]) - e[i]) * (double(f[i]) - e[i]);
    norm += double(e[i]) * e[i];
  }
  EXPECT_LE(err / norm, 1e-3);
}

class LoraAdapterFile : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!have_lora_fixtures()) GTEST_SKIP() << "no fixtures at " << lora_dir();
  }
};

// The resolved module set, ranks and scales equal the oracle's table; deltas equal s·B·A.
TEST_P(LoraAdapterFile, ModulesAndDeltas) {
  const std::string name = GetParam();
  json expected = read_json_file(lora_dir() + "/expected/" + name + ".json");
  auto ad = adapter(name, "tiny-bf16");
  EXPECT_EQ(size_t(ad->num_modules()), expected["modules"].size());
  for (const json& mod : expected["modules"]) {
    const int layer = mod["layer"].get<int>();
    int slot = -1;
    for (int s = 0; s < nn::kLoraSlots; ++s)
      if (mod["module"].get<std::string>() == nn::lora_slot_path(s)) slot = s;
    ASSERT_GE(slot, 0) << mod.dump();
    const auto& m = ad->layers.at(size_t(layer))[size_t(slot)];
    ASSERT_TRUE(m.has_value()) << mod["mlx_path"];
    EXPECT_EQ(m->rank, mod["rank"].get<int64_t>()) << mod["mlx_path"];
    EXPECT_NEAR(m->scale, mod["scale"].get<double>(), 1e-5) << mod["mlx_path"];
  }
  const json& fused = expected["fused"];
  int slot = -1;
  for (int s = 0; s < nn::kLoraSlots; ++s)
    if (fused["module"].get<std::string>() == nn::lora_slot_path(s)) slot = s;
  auto exp = SafetensorsFile::open(lora_dir() + "/expected/" + name + ".safetensors");
  std::vector<float> want = exp->tensor("fused.tiny-bf16.delta_f32").to_floats();
  std::vector<float> got = ad->delta(fused["layer"].get<int>(), slot);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LE(max_abs_diff(got.data(), want.data(), got.size()), 1e-6f);
}

INSTANTIATE_TEST_SUITE_P(All, LoraAdapterFile, ::testing::ValuesIn(adapter_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

// ------------------------------------------------------------------------------------------------
// Bad adapters: clear errors naming the file and tensor or field.

struct Scratch {
  fs::path dir;
  explicit Scratch(const std::string& from) {
    dir = fs::temp_directory_path() / ("vlm-lora-" + std::to_string(::getpid()) + "-" + from);
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(lora_dir() + "/" + from)) {
      fs::copy_file(e.path(), dir / e.path().filename());
      fs::permissions(dir / e.path().filename(), fs::perms::owner_write, fs::perm_options::add);
    }
  }
  ~Scratch() { fs::remove_all(dir); }
  void write_config(const json& j) const { std::ofstream(dir / "adapter_config.json") << j.dump(); }
  json config() const { return read_json_file((dir / "adapter_config.json").string()); }
  // Rewrites the weights file with `edit` applied to its tensors.
  void edit_tensors(const std::string& file,
                    const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) const {
    std::vector<std::pair<std::string, Tensor>> tensors;
    {
      auto st = SafetensorsFile::open((dir / file).string());
      for (const auto& [n, e] : st->entries()) {
        (void)e;
        tensors.emplace_back(n, st->tensor(n).contiguous());
        tensors.back().second = Tensor::from_floats(tensors.back().second.to_floats(), tensors.back().second.shape());
      }
    }
    edit(tensors);
    save_safetensors((dir / file).string(), tensors);
  }
};

std::string load_error(const fs::path& dir, const std::string& base = "tiny-bf16") {
  try {
    model(base).load_adapter(dir.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_HAS(msg, ...)                                                        \
  do {                                                                                    \
    const std::string m_ = (msg);                                                         \
    EXPECT_FALSE(m_.empty()) << "no error";                                               \
    for (const char* s_ : {__VA_ARGS__}) EXPECT_NE(m_.find(s_), std::string::npos) << m_; \
  } while (0)

class LoraBad : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_lora_fixtures()) GTEST_SKIP() << "no fixtures at " << lora_dir();
  }
};

TEST_F(LoraBad, RankMismatch) {
  Scratch s("mlx-qproj-vproj");
  json c = s.config();
  c["lora_parameters"]["rank"] = 8;
  s.write_config(c);
  EXPECT_ERROR_HAS(load_error(s.dir), "adapters.safetensors", ".lora_a", "has shape");
}

TEST_F(LoraBad, MissingTensor) {
  Scratch s("peft-qv");
  s.edit_tensors("adapter_model.safetensors", [](auto& t) {
    t.erase(std::remove_if(
                t.begin(), t.end(),
                [](auto& p) { return p.first == "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"; }),
            t.end());
  });
  EXPECT_ERROR_HAS(load_error(s.dir), "adapter_model.safetensors", "layers.0.self_attn.q_proj.lora_A.weight",
                   "no matching");
}

TEST_F(LoraBad, UnknownTargetModule) {
  Scratch s("mlx-qproj-vproj");
  s.edit_tensors("adapters.safetensors", [](auto& t) {
    t.emplace_back("language_model.model.layers.0.self_attn.rotary.lora_a", Tensor::zeros(DType::F32, {64, 4}));
    t.emplace_back("language_model.model.layers.0.self_attn.rotary.lora_b", Tensor::zeros(DType::F32, {4, 64}));
  });
  EXPECT_ERROR_HAS(load_error(s.dir), "adapters.safetensors", "self_attn.rotary", "not a Linear");
}

TEST_F(LoraBad, VisionTowerModule) {
  Scratch s("peft-qv");
  s.edit_tensors("adapter_model.safetensors", [](auto& t) {
    t.emplace_back("base_model.model.visual.blocks.0.attn.qkv.lora_A.weight", Tensor::zeros(DType::F32, {8, 32}));
    t.emplace_back("base_model.model.visual.blocks.0.attn.qkv.lora_B.weight", Tensor::zeros(DType::F32, {96, 8}));
  });
  EXPECT_ERROR_HAS(load_error(s.dir), "visual.blocks.0.attn.qkv", "vision");
}

TEST_F(LoraBad, NotSelectedByConfig) {
  Scratch s("mlx-qproj-vproj");
  json c = s.config();
  c["lora_parameters"]["keys"] = {"self_attn.q_proj"};
  s.write_config(c);
  EXPECT_ERROR_HAS(load_error(s.dir), "v_proj.lora_a", "keys");
  c = s.config();
  c["lora_parameters"]["keys"] = {"self_attn.q_proj", "self_attn.v_proj"};
  c["num_layers"] = 1;
  s.write_config(c);
  EXPECT_ERROR_HAS(load_error(s.dir), "layers.0", "num_layers");
}

TEST_F(LoraBad, RegexTargetsMatchTheAdaptersOwnNaming) {
  Scratch s("peft-rslora-regex");
  json c = s.config();  // the same regex written for the old names selects nothing of this adapter
  c["target_modules"] = "model\\.layers\\.1\\.self_attn\\.(q|k|v)_proj|model\\.layers\\.0\\.mlp\\.(gate|up)_proj";
  s.write_config(c);
  EXPECT_ERROR_HAS(load_error(s.dir), "target_modules", "does not select");
}

TEST_F(LoraBad, DoraAndModulesToSave) {
  Scratch s("peft-qv");
  json c = s.config();
  c["use_dora"] = true;
  s.write_config(c);
  EXPECT_ERROR_HAS(load_error(s.dir), "adapter_config.json", "use_dora");
  c["use_dora"] = false;
  c["modules_to_save"] = {"lm_head"};
  s.write_config(c);
  EXPECT_ERROR_HAS(load_error(s.dir), "adapter_config.json", "modules_to_save");
  Scratch m("mlx-qproj-vproj");
  json mc = m.config();
  mc["fine_tune_type"] = "dora";
  m.write_config(mc);
  EXPECT_ERROR_HAS(load_error(m.dir), "adapter_config.json", "dora");
}

TEST_F(LoraBad, ArchitectureMismatch) {
  Scratch s("peft-qv");  // q_proj of another model: in_features 128
  s.edit_tensors("adapter_model.safetensors", [](auto& t) {
    for (auto& [n, x] : t)
      if (n == "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
        x = Tensor::zeros(DType::F32, {8, 128});
  });
  EXPECT_ERROR_HAS(load_error(s.dir), "layers.1.self_attn.q_proj.lora_A.weight", "has shape [8, 128]");
  Scratch d("mlx-qproj-vproj");
  d.edit_tensors("adapters.safetensors", [](auto& t) {
    t.emplace_back("language_model.model.layers.7.self_attn.q_proj.lora_a", Tensor::zeros(DType::F32, {64, 4}));
    t.emplace_back("language_model.model.layers.7.self_attn.q_proj.lora_b", Tensor::zeros(DType::F32, {4, 64}));
  });
  EXPECT_ERROR_HAS(load_error(d.dir), "layer 7", "2 decoder layers");
}

TEST_F(LoraBad, NotAnAdapter) {
  EXPECT_ERROR_HAS(load_error(fixture_dir() + "/tiny-bf16"), "adapter_config.json");
  EXPECT_ERROR_HAS(load_error("/nonexistent/adapter"), "not a directory");
}

}  // namespace
}  // namespace vlm
