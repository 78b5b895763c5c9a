// ModelContext end to end with a fake model family registered at run time (real tokenizer from the
// shared fixtures) and with the trained demo model.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "io/json_file.h"
#include "models/registry.h"
#include "vlm/vlm.hpp"

namespace vlm {
namespace {

namespace fs = std::filesystem;

const std::string kShared = VLM_SHARED_DIR;
const std::string kTiny = kShared + "/fixtures/qwen2_vl/tiny-bf16";

// What the fake processor saw last (the test inspects it).
struct Seen {
  int images = 0;
  int width = 0, height = 0;
  std::vector<uint8_t> first_pixels;
  ProcessingOptions options;
};
Seen g_seen;
std::vector<int32_t> g_script;  // ids the fake model "generates", in order

class FakeProcessor : public Processor {
 public:
  explicit FakeProcessor(const Tokenizer& tok) : tok_(tok) {}
  ModelInput prepare(const std::vector<ChatMessage>& messages, const ProcessingOptions& options) const override {
    g_seen = Seen{};
    g_seen.options = options;
    ModelInput in;
    for (const auto& m : messages)
      for (const auto& p : m.content) {
        if (p.kind == ContentPart::Kind::Image) {
          ++g_seen.images;
          g_seen.width = p.image.width;
          g_seen.height = p.image.height;
          g_seen.first_pixels.assign(p.image.rgb.begin(),
                                     p.image.rgb.begin() + std::min<size_t>(6, p.image.rgb.size()));
          in.ids.push_back(0);
        } else {
          in.prompt_text += p.text;
          auto ids = tok_.encode(p.text, false);
          in.ids.insert(in.ids.end(), ids.begin(), ids.end());
        }
      }
    return in;
  }

 private:
  const Tokenizer& tok_;
};

class FakeSeq : public Sequence {
 public:
  explicit FakeSeq(int64_t vocab) : vocab_(vocab) {}
  std::vector<float> prefill(const ModelInput& in) override {
    len_ = int64_t(in.ids.size());
    return next();
  }
  std::vector<float> step(int32_t) override {
    ++len_;
    return next();
  }
  int64_t length() const override { return len_; }
  double vision_ms() const override { return 0; }

 private:
  std::vector<float> next() {
    std::vector<float> l(size_t(vocab_), 0.0f);
    l[size_t(g_script[pos_++ % g_script.size()])] = 5.0f;
    return l;
  }
  int64_t vocab_, len_ = 0;
  size_t pos_ = 0;
};

class FakeModel : public Model {
 public:
  explicit FakeModel(const Checkpoint& ckpt) {
    info_.model_type = "fake_api";
    info_.vocab_size = 151936;
    info_.context_length = json_get<int64_t>(ckpt.config(), "max_position_embeddings", 0, "config");
  }
  const ModelInfo& info() const override { return info_; }
  std::unique_ptr<Sequence> start(const Compute&) const override { return std::make_unique<FakeSeq>(info_.vocab_size); }

 private:
  ModelInfo info_;
};

class FakeFamily : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kTiny)) GTEST_SKIP() << "shared fixtures absent: " << kTiny;
    register_model_type("fake_api", [](const Checkpoint& c) { return std::make_unique<FakeModel>(c); });
    register_processor_class("FakeApiProcessor", [](const std::string&, const Tokenizer& t, const json&) {
      return std::make_unique<FakeProcessor>(t);
    });
    dir_ = fs::temp_directory_path() / ("vlm_api_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    write("config.json", R"({"model_type": "fake_api", "eos_token_id": 7, "max_position_embeddings": 64})");
    write("generation_config.json", R"({"eos_token_id": [8, 7]})");
    write("preprocessor_config.json", R"({"processor_class": "FakeApiProcessor"})");
    // One dummy tensor: a model directory needs a weight file.
    std::string header = R"({"dummy":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    std::string st(8, '\0');
    for (int i = 0; i < 8; ++i) st[size_t(i)] = char((header.size() >> (8 * i)) & 0xFF);
    write("model.safetensors", st + header + std::string(4, '\0'));
    // The fixture's tokenizer.json may be a git symlink stored as a text file: link the real file.
    fs::create_symlink(kShared + "/assets/qwen2-vl-2b-instruct/tokenizer.rebuilt.json", dir_ / "tokenizer.json");
    fs::create_symlink(fs::canonical(fs::path(kTiny) / "tokenizer_config.json"), dir_ / "tokenizer_config.json");
    ctx_ = ModelContext::load(dir_.string());
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }

  fs::path dir_;
  ModelContext ctx_;
};

TEST_F(FakeFamily, EosIdsAreGatheredFromEverySource) {
  // config.json 7, generation_config.json 8 (7 again), tokenizer eos <|im_end|> = 151645.
  EXPECT_EQ(ctx_.info().eos_ids, (std::vector<int32_t>{7, 8, 151645}));
  EXPECT_EQ(ctx_.info().model_type, "fake_api");
  EXPECT_EQ(ctx_.info().context_length, 64);
}

TEST_F(FakeFamily, GeneratesStreamsAndStopsWithTheRealTokenizer) {
  g_script = ctx_.text().encode(" hello world, and more", false);
  g_script.push_back(151645);
  GenerationParams p;
  p.max_tokens = 100;
  std::string streamed;
  GenerationResult r = ctx_.generate(UserInput::from_prompt("Say hello"), p, [&](std::string_view s, int32_t) {
    streamed += s;
    return true;
  });
  EXPECT_EQ(r.text, " hello world, and more");
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.token_ids, g_script);

  p.stop = {"d, a"};  // spans the tokens " world", ",", " and"
  streamed.clear();
  r = ctx_.generate(UserInput::from_prompt("Say hello"), p, [&](std::string_view s, int32_t) {
    streamed += s;
    return true;
  });
  EXPECT_EQ(r.text, " hello worl");
  EXPECT_EQ(streamed, " hello worl");
  EXPECT_EQ(r.finish_reason, "stop");
}

TEST_F(FakeFamily, CallbackCancelsAndMaxTokensLimits) {
  g_script = ctx_.text().encode(" one two three four five", false);
  GenerationParams p;
  p.max_tokens = 100;
  int calls = 0;
  GenerationResult r =
      ctx_.generate(UserInput::from_prompt("x"), p, [&](std::string_view, int32_t) { return ++calls < 2; });
  EXPECT_EQ(r.finish_reason, "cancelled");
  EXPECT_EQ(r.token_ids.size(), 2u);
  p.max_tokens = 3;
  r = ctx_.generate(UserInput::from_prompt("x"), p);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.text, " one two three");
}

TEST_F(FakeFamily, PromptBeyondContextIsAClearError) {
  g_script = {100};
  std::string long_text;
  for (int i = 0; i < 80; ++i) long_text += " word";
  try {
    ctx_.generate(UserInput::from_prompt(long_text), GenerationParams{});
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("context length of 64"), std::string::npos) << e.what();
  }
}

TEST_F(FakeFamily, ImagesAndOptionsReachTheProcessor) {
  UserInput in;
  in.messages.push_back(
      {"user", {UserInput::Part::image_rgb(2, 1, {1, 2, 3, 4, 5, 6}), UserInput::Part::text_part("hi")}});
  in.options.resize_width = 32;
  in.options.resize_height = 16;
  in.options.max_pixels = 1000;
  PreparedInput prepared = ctx_.prepare(in);
  EXPECT_EQ(g_seen.images, 1);
  EXPECT_EQ(g_seen.width, 2);
  EXPECT_EQ(g_seen.height, 1);
  EXPECT_EQ(g_seen.first_pixels, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(g_seen.options.resize_width, 32);
  EXPECT_EQ(g_seen.options.max_pixels, 1000);
  EXPECT_EQ(prepared.prompt_text(), "hi");

  in.options.resize_height = 0;  // half a size
  EXPECT_THROW(ctx_.prepare(in), std::exception);
  UserInput bad = UserInput::from_prompt("x", {"/no/such/image.png"});
  try {
    ctx_.prepare(bad);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/image.png"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------

const std::string kDemo = kShared + "/demo";

TEST(DemoModel, CaptionsAndPromptIdsMatchTheReference) {
  if (!fs::exists(kDemo)) GTEST_SKIP() << "demo model absent";
  json cases = read_json_file(kDemo + "/cases.json");
  const json& c = cases["cases"][1];  // shapes_02.png
  ModelContext ctx = ModelContext::load(kDemo + "/qwen2-vl-shapes-4bit");
  PreparedInput in =
      ctx.prepare(UserInput::from_prompt("Describe the image.", {kDemo + "/" + c["image"].get<std::string>()}));
  EXPECT_EQ(in.ids(), c["input_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(in.num_images(), 1);
  GenerationParams p;
  p.max_tokens = 20;
  GenerationResult r = ctx.generate(in, p);
  EXPECT_EQ(r.text, c["expected_caption"].get<std::string>());
  EXPECT_EQ(r.token_ids, c["models"]["qwen2-vl-shapes-4bit"]["generated_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.stats.prompt_tokens, 41);
  EXPECT_GT(r.stats.image_encode_ms, 0);
  EXPECT_GT(r.stats.peak_memory_bytes, 0);
  EXPECT_GT(peak_memory_bytes(), 0);
}

TEST(DemoModel, QwenStopsOnImEndAndEndOfText) {
  for (const std::string& dir : {kDemo + "/qwen2-vl-shapes", kShared + "/fixtures/qwen2_vl/tiny-mlx-4bit-2024"}) {
    if (!fs::exists(dir)) GTEST_SKIP() << dir << " absent";
    ModelSummary s = inspect_model(dir);
    ModelContext ctx = ModelContext::load(dir);
    const auto& eos = ctx.info().eos_ids;
    EXPECT_NE(std::find(eos.begin(), eos.end(), 151645), eos.end()) << dir;
    EXPECT_NE(std::find(eos.begin(), eos.end(), 151643), eos.end()) << dir;
  }
}

TEST(DemoModel, InspectCountsParameters) {
  if (!fs::exists(kDemo)) GTEST_SKIP() << "demo model absent";
  ModelSummary bf16 = inspect_model(kDemo + "/qwen2-vl-shapes");
  EXPECT_EQ(bf16.num_parameters, 10703680);  // demo/README.md
  EXPECT_FALSE(bf16.quantized);
  ModelSummary q = inspect_model(kDemo + "/qwen2-vl-shapes-4bit");
  EXPECT_EQ(q.num_parameters, 10703680);
  EXPECT_TRUE(q.quantized);
  EXPECT_EQ(q.quant_bits, 4);
  EXPECT_EQ(q.quant_group_size, 64);
  EXPECT_EQ(q.model_type, "qwen2_vl");
  EXPECT_EQ(q.context_length, 32768);
}

}  // namespace
}  // namespace vlm

namespace vlm {
namespace {

// Precision and threads belong to each context: an exact and a fast context in one process,
// generating at the same time on two threads, each give what they give alone.
TEST(DemoModel, TwoContextsWithDifferentPrecisionShareNothing) {
  if (!fs::exists(kDemo)) GTEST_SKIP() << "demo model absent";
  json cases = read_json_file(kDemo + "/cases.json");
  const std::string dir = kDemo + "/qwen2-vl-shapes-4bit";
  LoadOptions exact_opts, fast_opts;
  exact_opts.precision = "exact";
  exact_opts.threads = 1;
  fast_opts.precision = "fast";
  fast_opts.threads = 2;
  ModelContext exact = ModelContext::load(dir, exact_opts), fast = ModelContext::load(dir, fast_opts);
  EXPECT_EQ(exact.info().precision, "exact");
  EXPECT_EQ(fast.info().precision, "fast");
  EXPECT_EQ(exact.info().threads, 1);
  EXPECT_EQ(fast.info().threads, 2);
  GenerationParams p;
  p.max_tokens = 20;
  for (const json& c : cases["cases"]) {
    UserInput in = UserInput::from_prompt("Describe the image.", {kDemo + "/" + c["image"].get<std::string>()});
    GenerationResult a, b;
    std::thread other([&] { b = fast.generate(in, p); });
    a = exact.generate(in, p);
    other.join();
    EXPECT_EQ(a.token_ids, c["models"]["qwen2-vl-shapes-4bit"]["generated_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(a.text, c["expected_caption"].get<std::string>());
    EXPECT_EQ(b.text, c["expected_caption"].get<std::string>()) << "fast precision, " << c["image"];
  }
  LoadOptions bad;
  bad.precision = "int4";
  EXPECT_THROW(ModelContext::load(dir, bad), Error);
}

// With neither LoadOptions::precision nor VLM_PRECISION set, a model runs `fast`, and the demo
// model's captions stay exact in both of its directories (dense bf16 and MLX 4-bit).
TEST(DemoModel, DefaultPrecisionIsFastAndKeepsEveryCaption) {
  if (!fs::exists(kDemo)) GTEST_SKIP() << "demo model absent";
  const char* env = std::getenv("VLM_PRECISION");
  const std::string saved = env ? env : "";
  unsetenv("VLM_PRECISION");
  json cases = read_json_file(kDemo + "/cases.json");
  GenerationParams p;
  p.max_tokens = 20;
  for (const std::string name : {"qwen2-vl-shapes", "qwen2-vl-shapes-4bit"}) {
    ModelContext ctx = ModelContext::load(kDemo + "/" + name, LoadOptions{});
    EXPECT_EQ(ctx.info().precision, "fast");
    for (const json& c : cases["cases"]) {
      UserInput in = UserInput::from_prompt("Describe the image.", {kDemo + "/" + c["image"].get<std::string>()});
      EXPECT_EQ(ctx.generate(in, p).text, c["expected_caption"].get<std::string>()) << name << ", " << c["image"];
    }
  }
  if (env) setenv("VLM_PRECISION", saved.c_str(), 1);
}

// A batch decodes in lockstep but each sequence gets exactly what it gets alone: prompts of
// different lengths (images, text only), sequences that finish at different steps (EOS, a stop
// string, max_tokens); log-probabilities agree up to the summation order of the batched matmul.
TEST(DemoModel, BatchGivesEachSequenceWhatItGetsAlone) {
  if (!fs::exists(kDemo)) GTEST_SKIP() << "demo model absent";
  json cases = read_json_file(kDemo + "/cases.json");
  ModelContext ctx = ModelContext::load(kDemo + "/qwen2-vl-shapes-4bit");
  std::vector<PreparedInput> inputs;
  for (const json& c : cases["cases"])
    inputs.push_back(
        ctx.prepare(UserInput::from_prompt("Describe the image.", {kDemo + "/" + c["image"].get<std::string>()})));
  inputs.push_back(ctx.prepare(UserInput::from_prompt("Describe the image. What shapes do you see?", {})));
  ASSERT_GE(inputs.size(), 3u);
  for (int variant = 0; variant < 3; ++variant) {
    GenerationParams p;
    p.max_tokens = variant == 2 ? 5 : 20;
    if (variant == 1) p.stop = {"square"};
    p.logprobs = true;
    p.top_logprobs = 2;
    std::vector<GenerationResult> batch = ctx.generate_batch(inputs, p);
    ASSERT_EQ(batch.size(), inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      GenerationResult alone = ctx.generate(inputs[i], p);
      SCOPED_TRACE("variant " + std::to_string(variant) + ", input " + std::to_string(i));
      EXPECT_EQ(batch[i].token_ids, alone.token_ids);
      EXPECT_EQ(batch[i].text, alone.text);
      EXPECT_EQ(batch[i].finish_reason, alone.finish_reason);
      ASSERT_EQ(batch[i].logprobs.size(), alone.logprobs.size());
      for (size_t t = 0; t < alone.logprobs.size(); ++t)
        EXPECT_NEAR(batch[i].logprobs[t].logprob, alone.logprobs[t].logprob, 1e-4);  // GEMM vs GEMV sums
      EXPECT_EQ(batch[i].stats.prompt_tokens, int64_t(inputs[i].ids().size()));
    }
  }
  EXPECT_TRUE(ctx.generate_batch({}, GenerationParams{}).empty());
  EXPECT_THROW(ctx.generate_batch({PreparedInput{}}, GenerationParams{}), Error);
}

}  // namespace
}  // namespace vlm

namespace vlm {
namespace {

// LoRA through the public API: an adapter id selects the adapter per generation (the oracle's greedy
// tokens), generations without it are the base model's, and bad ids or adapters are clear errors.
TEST(LoraApi, AdaptersArePerGeneration) {
  const std::string lora = kShared + "/fixtures/lora";
  if (!fs::is_directory(lora + "/expected")) GTEST_SKIP() << "no lora fixtures";
  LoadOptions lo;
  lo.threads = 2;
  ModelContext ctx = ModelContext::load(kTiny, lo);
  const int id = ctx.load_adapter(lora + "/peft-qv", "qv");
  EXPECT_EQ(id, 0);
  ASSERT_EQ(ctx.adapters().size(), 1u);
  EXPECT_EQ(ctx.adapters()[0].name, "qv");
  EXPECT_EQ(ctx.adapters()[0].format, "peft");
  EXPECT_EQ(ctx.adapters()[0].modules.size(), 4u);
  PreparedInput in = ctx.prepare(UserInput::from_prompt("Write a haiku about the sea."));
  GenerationParams p;
  p.max_tokens = 16;
  p.adapters = {{id, 1.0f}};
  const GenerationResult with = ctx.generate(in, p);
  json expected = read_json_file(lora + "/expected/peft-qv.json");
  std::vector<int32_t> want;
  for (const json& c : expected["cases"])
    if (c["case"] == "01_text_only") want = c["results"]["tiny-bf16"]["generated_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(with.token_ids, want);
  p.adapters.clear();
  const GenerationResult without = ctx.generate(in, p);
  EXPECT_NE(without.token_ids, with.token_ids);
  p.adapters = {{3, 1.0f}};
  EXPECT_THROW(ctx.generate(in, p), Error);
  EXPECT_THROW(ctx.load_adapter(kTiny), Error);
}

}  // namespace
}  // namespace vlm
