// Tokenizer throughput: single-thread encode MB/s on generated mixed English/CJK/code text, and the
// load time of the Qwen2 (7 MB) and PaliGemma (11.5 MB) tokenizer.json files.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "text/tokenizer.h"

namespace {

namespace fs = std::filesystem;

std::string shared_dir() {
  const char* env = std::getenv("VLM_SHARED_DIR");
  if (env) return env;
  for (fs::path p = fs::current_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
    if (fs::exists(p / "shared/assets")) return (p / "shared").string();
  return "/work/shared";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string qwen_json() {
  return slurp(fs::path(shared_dir()) / "assets/qwen2-vl-2b-instruct/tokenizer.rebuilt.json");
}
std::string qwen_config() {
  return slurp(fs::path(shared_dir()) / "assets/qwen2-vl-2b-instruct/tokenizer_config.json");
}
std::string gemma_json() {
  return slurp(fs::path(shared_dir()) / "assets/paligemma-3b-mix-448/tokenizer.json");
}

// ~`bytes` of English prose, CJK, and code in alternating paragraphs (deterministic).
std::string mixed_text(size_t bytes) {
  static const char* kEnglish[] = {
      "the",       "model",  "reads",    "an",    "image",  "and",   "answers", "questions", "about",    "it,", "while",
      "streaming", "tokens", "quickly.", "Hello", "world!", "don't", "1234",    "3.14159",   "  spaced", "out", "\n"};
  static const char* kCjk[] = {"我想", "在",     "苹果",   "工作", "。",   "今日は", "いい天気", "ですね",
                               "、",   "한국어", "텍스트", "入力", "処理", "中文",   "模型"};
  static const char* kCode[] = {"for (int i = 0; i < n; ++i) {", "  sum += a[i] * b[i];",          "}",  "def f(x):",
                                "    return x ** 2  # square",   "if (ptr == nullptr) return -1;", "\t", "\n"};
  std::mt19937 rng(42);
  std::string out;
  while (out.size() < bytes) {
    int kind = static_cast<int>(rng() % 3);
    for (int w = 0; w < 40; ++w) {
      if (kind == 0) {
        out += kEnglish[rng() % std::size(kEnglish)];
        out += ' ';
      } else if (kind == 1) {
        out += kCjk[rng() % std::size(kCjk)];
      } else {
        out += kCode[rng() % std::size(kCode)];
        out += '\n';
      }
    }
    out += "\n\n";
  }
  return out;
}

void BM_EncodeQwen(benchmark::State& state) {
  auto tok = vlm::Tokenizer::from_json(qwen_json(), qwen_config());
  std::string text = mixed_text(static_cast<size_t>(state.range(0)) << 20);
  size_t n = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text, false);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n);
}
BENCHMARK(BM_EncodeQwen)->Arg(4)->Unit(benchmark::kMillisecond);

// The same text as independent paragraphs (prompt-sized inputs, the common case).
void BM_EncodeQwenParagraphs(benchmark::State& state) {
  auto tok = vlm::Tokenizer::from_json(qwen_json(), qwen_config());
  std::string text = mixed_text(static_cast<size_t>(state.range(0)) << 20);
  std::vector<std::string_view> paras;
  for (size_t b = 0; b < text.size();) {
    size_t e = text.find("\n\n", b);
    e = e == std::string::npos ? text.size() : e + 2;
    paras.push_back(std::string_view(text).substr(b, e - b));
    b = e;
  }
  for (auto _ : state)
    for (auto p : paras) benchmark::DoNotOptimize(tok.encode(p, false).data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["paragraphs"] = static_cast<double>(paras.size());
}
BENCHMARK(BM_EncodeQwenParagraphs)->Arg(4)->Unit(benchmark::kMillisecond);

void BM_EncodeGemma(benchmark::State& state) {
  auto tok = vlm::Tokenizer::from_json(gemma_json());
  std::string text = mixed_text(static_cast<size_t>(state.range(0)) << 20);
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode(text, false).data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_EncodeGemma)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_DecodeQwen(benchmark::State& state) {
  auto tok = vlm::Tokenizer::from_json(qwen_json(), qwen_config());
  std::string text = mixed_text(1 << 20);
  auto ids = tok.encode(text, false);
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids).data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_DecodeQwen)->Unit(benchmark::kMillisecond);

void BM_LoadQwen(benchmark::State& state) {
  std::string json = qwen_json(), config = qwen_config();
  for (auto _ : state) benchmark::DoNotOptimize(vlm::Tokenizer::from_json(json, config).vocab_size());
}
BENCHMARK(BM_LoadQwen)->Unit(benchmark::kMillisecond);

void BM_LoadGemma(benchmark::State& state) {
  std::string json = gemma_json();
  for (auto _ : state) benchmark::DoNotOptimize(vlm::Tokenizer::from_json(json).vocab_size());
}
BENCHMARK(BM_LoadGemma)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
