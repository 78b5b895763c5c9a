// Every line of the HF-oracle fixtures (/work/shared/fixtures/tokenizer/*.jsonl) must match exactly:
// ids, decode with and without special tokens, and the streaming detokenizer's concatenated output.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "text/tokenizer.h"

namespace {

namespace fs = std::filesystem;
const fs::path kShared = VLM_SHARED_DIR;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const vlm::Tokenizer& qwen() {
  static const vlm::Tokenizer t =
      vlm::Tokenizer::from_json(slurp(kShared / "assets/qwen2-vl-2b-instruct/tokenizer.rebuilt.json"),
                                slurp(kShared / "assets/qwen2-vl-2b-instruct/tokenizer_config.json"));
  return t;
}

const vlm::Tokenizer& paligemma() {
  static const vlm::Tokenizer t =
      vlm::Tokenizer::from_json(slurp(kShared / "assets/paligemma-3b-mix-448/tokenizer.json"),
                                slurp(kShared / "assets/paligemma-3b-mix-448/tokenizer_config.colpali.json"));
  return t;
}

const vlm::Tokenizer& gemma3() {
  static const vlm::Tokenizer t = vlm::Tokenizer::from_json(slurp(kShared / "assets/gemma-3/tokenizer.json"),
                                                            slurp(kShared / "assets/gemma-3/tokenizer_config.json"));
  return t;
}

struct Line {
  std::string text, decoded, decoded_skip, category;
  bool add_special;
  std::vector<int32_t> ids;
};

std::vector<Line> read_fixture(const std::string& name) {
  std::vector<Line> out;
  std::ifstream in(kShared / "fixtures/tokenizer" / name);
  std::string s;
  while (std::getline(in, s)) {
    if (s.empty()) continue;
    auto j = nlohmann::json::parse(s);
    out.push_back({j["text"], j["decoded"], j["decoded_skip_special"], j["category"], j["add_special_tokens"],
                   j["ids"].get<std::vector<int32_t>>()});
  }
  return out;
}

std::string stream_decode(const vlm::Tokenizer& t, const std::vector<int32_t>& ids, bool skip) {
  vlm::StreamingDetokenizer d(t, skip);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  return out + d.flush();
}

void check_fixture(const vlm::Tokenizer& tok, const std::string& name, size_t expected_lines) {
  if (!fs::exists(kShared)) GTEST_SKIP() << "no shared folder";
  auto lines = read_fixture(name);
  ASSERT_EQ(lines.size(), expected_lines);
  size_t ok = 0;
  for (const auto& l : lines) {
    auto ids = tok.encode(l.text, l.add_special);
    EXPECT_EQ(ids, l.ids) << name << " [" << l.category << "] text=" << nlohmann::json(l.text).dump();
    std::string d = tok.decode(l.ids, false), ds = tok.decode(l.ids, true);
    EXPECT_EQ(d, l.decoded) << name << " decode [" << l.category << "]";
    EXPECT_EQ(ds, l.decoded_skip) << name << " decode skip [" << l.category << "]";
    EXPECT_EQ(stream_decode(tok, l.ids, false), l.decoded) << name << " stream [" << l.category << "]";
    EXPECT_EQ(stream_decode(tok, l.ids, true), l.decoded_skip) << name << " stream skip [" << l.category << "]";
    ok += ids == l.ids && d == l.decoded && ds == l.decoded_skip;
  }
  EXPECT_EQ(ok, lines.size());
}

TEST(TokenizerFixture, Qwen2VL) {
  check_fixture(qwen(), "qwen2-vl-2b-instruct.jsonl", 326);
}
TEST(TokenizerFixture, PaliGemma) {
  check_fixture(paligemma(), "paligemma-3b-mix-448.jsonl", 410);
}

TEST(TokenizerFixture, Gemma3) {
  check_fixture(gemma3(), "gemma3.jsonl", 438);
}

TEST(TokenizerFixture, QwenSpecialIdsAndConfig) {
  if (!fs::exists(kShared)) GTEST_SKIP() << "no shared folder";
  const auto& t = qwen();
  EXPECT_EQ(t.token_to_id("<|vision_start|>"), 151652);
  EXPECT_EQ(t.token_to_id("<|image_pad|>"), 151655);
  EXPECT_EQ(t.token_to_id("<|im_end|>"), 151645);
  EXPECT_EQ(t.eos_id(), 151645);
  EXPECT_EQ(t.pad_id(), 151643);
  EXPECT_FALSE(t.bos_id().has_value());
  EXPECT_TRUE(t.is_special(151644));
  EXPECT_FALSE(t.is_special(9707));
  EXPECT_EQ(t.id_to_token(9707), "Hello");
  EXPECT_EQ(t.id_to_token(1879), "\xC4\xA0world");
  EXPECT_GE(t.vocab_size(), 151657);
  EXPECT_NE(t.chat_template().find("<|im_start|>"), std::string::npos);
}

TEST(TokenizerFixture, PaliGemmaConfig) {
  if (!fs::exists(kShared)) GTEST_SKIP() << "no shared folder";
  const auto& t = paligemma();
  EXPECT_EQ(t.bos_id(), 2);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.pad_id(), 0);
  EXPECT_EQ(t.bos_token(), "<bos>");
  EXPECT_EQ(t.token_to_id("<image>"), 257152);
  EXPECT_EQ(t.vocab_size(), 257153);
  // add_bos_token=false in the config overrides tokenizer.json's "<bos> $A" template.
  EXPECT_EQ(t.encode("caption en", true), t.encode("caption en", false));
  EXPECT_TRUE(t.chat_template().empty());
}

TEST(TokenizerFixture, PaliGemmaWithoutConfigKeepsTemplate) {
  if (!fs::exists(kShared)) GTEST_SKIP() << "no shared folder";
  auto t = vlm::Tokenizer::from_json(slurp(kShared / "assets/paligemma-3b-mix-448/tokenizer.json"));
  auto with = t.encode("caption en", true), without = t.encode("caption en", false);
  ASSERT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with[0], 2);
}

TEST(TokenizerFixture, FromDirFollowsPathFile) {
  fs::path dir = kShared / "demo/qwen2-vl-shapes";
  if (!fs::exists(dir)) GTEST_SKIP() << "no demo folder";
  auto t = vlm::Tokenizer::from_dir(dir.string());
  EXPECT_EQ(t.encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
  EXPECT_EQ(t.eos_id(), 151645);
  EXPECT_NE(t.chat_template().find("<|im_start|>"), std::string::npos);
}

TEST(TokenizerFixture, FromDirMissingFileIsError) {
  EXPECT_THROW(vlm::Tokenizer::from_dir("/nonexistent/dir"), std::runtime_error);
}

}  // namespace

namespace {

TEST(TokenizerStreaming, HoldsIncompleteCharacters) {
  if (!fs::exists(kShared)) GTEST_SKIP() << "no shared folder";
  const auto& t = qwen();
  auto ids = t.encode("a\xF0\x9F\x98\x81!");  // "a😁!": the emoji spans byte-level tokens
  vlm::StreamingDetokenizer d(t);
  std::vector<std::string> parts;
  for (int32_t id : ids) parts.push_back(d.push(id));
  parts.push_back(d.flush());
  std::string all;
  for (const auto& p : parts) {
    EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << "emitted a replacement character";
    all += p;
  }
  EXPECT_EQ(all, "a\xF0\x9F\x98\x81!");
  d.reset();
  EXPECT_EQ(d.push(ids[0]), "a");
}

TEST(TokenizerStreaming, RandomIdsMatchFullDecode) {
  if (!fs::exists(kShared)) GTEST_SKIP() << "no shared folder";
  for (const vlm::Tokenizer* t : {&qwen(), &paligemma()}) {
    uint32_t state = 12345;
    std::vector<int32_t> ids;
    for (int i = 0; i < 600; ++i) {
      state = state * 1664525u + 1013904223u;
      // mostly low ids (byte pieces and short tokens, where UTF-8 sequences get split), some anywhere
      int32_t id = static_cast<int32_t>((state >> 8) % (i % 3 ? 600u : static_cast<uint32_t>(t->vocab_size())));
      ids.push_back(id);
    }
    for (bool skip : {false, true}) EXPECT_EQ(stream_decode(*t, ids, skip), t->decode(ids, skip));
  }
}

TEST(TokenizerRobustness, InvalidUtf8WithRealTokenizers) {
  if (!fs::exists(kShared)) GTEST_SKIP() << "no shared folder";
  const std::string bad = "ok \xFF\xFE x\xC3 y\xE4\xBD\xA0\xE4\xBD z\xED\xA0\x80";
  const std::string repaired =
      "ok \xEF\xBF\xBD\xEF\xBF\xBD x\xEF\xBF\xBD y\xE4\xBD\xA0\xEF\xBF\xBD z\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD";
  for (const vlm::Tokenizer* t : {&qwen(), &paligemma()}) {
    auto ids = t->encode(bad, false);
    EXPECT_EQ(ids, t->encode(repaired, false));
    EXPECT_EQ(t->decode(ids), repaired);
  }
  // a lone lead byte as a token decodes to U+FFFD, not to invalid UTF-8
  auto lead = qwen().token_to_id("\xC3\xB0");  // "ð" = byte 0xF0
  ASSERT_TRUE(lead.has_value());
  EXPECT_EQ(qwen().decode({*lead}), "\xEF\xBF\xBD");
}

}  // namespace
