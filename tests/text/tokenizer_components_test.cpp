// Component tests on small hand-written tokenizer.json documents; expected values are derived by hand
// from the HF tokenizers semantics (see the comments next to each case).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/decoder.h"
#include "text/normalizer.h"
#include "text/pre_tokenizer.h"
#include "text/tokenizer.h"

namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

json bpe_model(json vocab, json merges, json extra = json::object()) {
  json m = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
  m.update(extra);
  return m;
}

vlm::Tokenizer make(json model, json extra = json::object(), const std::string& config = "") {
  json t = {{"version", "1.0"},
            {"added_tokens", json::array()},
            {"normalizer", nullptr},
            {"pre_tokenizer", nullptr},
            {"post_processor", nullptr},
            {"decoder", nullptr},
            {"model", model}};
  t.update(extra);
  return vlm::Tokenizer::from_json(t.dump(), config);
}

json added(int id, const std::string& content, json flags = json::object()) {
  json a = {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
            {"rstrip", false}, {"normalized", false}, {"special", false}};
  a.update(flags);
  return a;
}

std::vector<std::string> pre_tokenize(const json& cfg, const std::string& text) {
  auto p = vlm::text::make_pre_tokenizer(cfg);
  std::vector<vlm::text::Piece> pieces{{text, 0}};
  p->apply(pieces);
  std::vector<std::string> out;
  for (auto& x : pieces) out.push_back(x.text);
  return out;
}

std::string normalize(const json& cfg, const std::string& text) {
  return vlm::text::make_normalizer(cfg)->apply(text);
}

using Strs = std::vector<std::string>;

TEST(BpeModel, MergeRankOrderDecides) {
  json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  EXPECT_EQ(make(bpe_model(vocab, {"a b", "ab c"})).encode("abc"), (Ids{5}));
  EXPECT_EQ(make(bpe_model(vocab, {"b c", "a b"})).encode("abc"), (Ids{0, 4}));  // "a bc" is no merge
  EXPECT_EQ(make(bpe_model(vocab, {"a b", "b c"})).encode("abc"), (Ids{3, 2}));
  // merges written as [left, right] pairs
  EXPECT_EQ(make(bpe_model(vocab, json::array({{"b", "c"}, {"a", "bc"}}))).encode("abc"), (Ids{5}));
}

TEST(BpeModel, UnknownFuseAndByteFallback) {
  json vocab = {{"<unk>", 0}, {"a", 1}, {"<0x78>", 2}};
  EXPECT_EQ(make(bpe_model(vocab, json::array(), {{"unk_token", "<unk>"}})).encode("yya"), (Ids{0, 0, 1}));
  EXPECT_EQ(make(bpe_model(vocab, json::array(), {{"unk_token", "<unk>"}, {"fuse_unk", true}})).encode("yya"),
            (Ids{0, 1}));
  auto fb = make(bpe_model(vocab, json::array(), {{"unk_token", "<unk>"}, {"byte_fallback", true}}));
  EXPECT_EQ(fb.encode("xya"), (Ids{2, 0, 1}));  // 'x' has a byte piece, 'y' does not
}

TEST(BpeModel, IgnoreMergesPrefixAndSuffix) {
  json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"abc", 3}};
  EXPECT_EQ(make(bpe_model(vocab, json::array())).encode("abc"), (Ids{0, 1, 2}));
  EXPECT_EQ(make(bpe_model(vocab, json::array(), {{"ignore_merges", true}})).encode("abc"), (Ids{3}));
  // continuing_subword_prefix: non-initial characters are looked up as "##x"; "a ##b" merges into "ab"
  json pv = {{"<unk>", 0}, {"a", 1}, {"##b", 2}, {"ab", 3}};
  auto pre = make(bpe_model(pv, {"a ##b"}, {{"continuing_subword_prefix", "##"}, {"unk_token", "<unk>"}}));
  EXPECT_EQ(pre.encode("ab"), (Ids{3}));
  EXPECT_EQ(pre.encode("b"), (Ids{0}));
  json sv = {{"a", 0}, {"b</w>", 1}, {"ab</w>", 2}};
  EXPECT_EQ(make(bpe_model(sv, {"a b</w>"}, {{"end_of_word_suffix", "</w>"}})).encode("ab"), (Ids{2}));
}

TEST(WordPieceModel, GreedyLongestMatch) {
  json model = {{"type", "WordPiece"},
                {"unk_token", "[UNK]"},
                {"continuing_subword_prefix", "##"},
                {"max_input_chars_per_word", 100},
                {"vocab", {{"[UNK]", 0}, {"un", 1}, {"##aff", 2}, {"##able", 3}, {"hello", 4}, {",", 5}, {"##a", 6}}}};
  auto t = make(model, {{"normalizer", {{"type", "BertNormalizer"}, {"lowercase", true}}},
                        {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
                        {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}}});
  auto ids = t.encode("Unaffable, HELLO");
  EXPECT_EQ(ids, (Ids{1, 2, 3, 5, 4}));
  EXPECT_EQ(t.decode(ids), "unaffable, hello");
  EXPECT_EQ(t.encode("unxyz hello"), (Ids{0, 4}));  // one unknown piece makes the whole word [UNK]
}

TEST(UnigramModel, ViterbiAndUnknown) {
  json model = {
      {"type", "Unigram"},
      {"unk_id", 0},
      {"vocab",
       json::array({{"<unk>", 0.0}, {"\u2581", -1.0}, {"a", -1.0}, {"b", -2.5}, {"ab", -1.5}, {"\u2581a", -0.5}})}};
  auto t =
      make(model, {{"pre_tokenizer",
                    {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}, {"split", true}}},
                   {"decoder", {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}}}});
  // "▁ab": ▁a + b = -3.0 loses to ▁ + ab = -2.5
  EXPECT_EQ(t.encode("ab"), (Ids{1, 4}));
  EXPECT_EQ(t.decode({1, 4}), "ab");
  EXPECT_EQ(t.encode("a"), (Ids{5}));
  EXPECT_EQ(t.encode("cc"), (Ids{1, 0}));  // consecutive unknown characters fuse into one <unk>
  EXPECT_EQ(t.encode("a ab"), (Ids{5, 1, 4}));
}

TEST(PreTokenizers, SplitBehaviours) {
  auto split = [](const std::string& behavior) {
    return pre_tokenize({{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", false}},
                        "the-final--countdown");
  };
  EXPECT_EQ(split("Removed"), (Strs{"the", "final", "countdown"}));
  EXPECT_EQ(split("Isolated"), (Strs{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithPrevious"), (Strs{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithNext"), (Strs{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split("Contiguous"), (Strs{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(
      pre_tokenize({{"type", "Split"}, {"pattern", {{"Regex", "[a-z]+"}}}, {"behavior", "Removed"}, {"invert", true}},
                   "ab 12 cd"),
      (Strs{"ab", "cd"}));
  EXPECT_EQ(
      pre_tokenize({{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}"}}}, {"behavior", "Isolated"}, {"invert", false}},
                   "x١٢"),
      (Strs{"x", "١", "٢"}));  // Unicode digits via UCP
}

TEST(PreTokenizers, CharacterClassSplitters) {
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, "Hello,  world!"), (Strs{"Hello", ",", "world", "!"}));
  EXPECT_EQ(pre_tokenize({{"type", "WhitespaceSplit"}}, " a\u3000b\tc "), (Strs{"a", "b", "c"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "a123"), (Strs{"a", "1", "2", "3"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "a123b"), (Strs{"a", "123", "b"}));
  EXPECT_EQ(pre_tokenize({{"type", "Punctuation"}}, "a,b\u3002"), (Strs{"a", ",", "b", "\u3002"}));
  json seq = {{"type", "Sequence"},
              {"pretokenizers", json::array({{{"type", "WhitespaceSplit"}}, {{"type", "Punctuation"}}})}};
  EXPECT_EQ(pre_tokenize(seq, "hi, you"), (Strs{"hi", ",", "you"}));
}

TEST(PreTokenizers, ByteLevel) {
  json with_regex = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  EXPECT_EQ(pre_tokenize(with_regex, "hi there's"), (Strs{"\u0120hi", "\u0120there", "'s"}));
  json no_regex = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  EXPECT_EQ(pre_tokenize(no_regex, "a b\n"), (Strs{"a\u0120b\u010a"}));
}

TEST(PreTokenizers, Metaspace) {
  json always = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}, {"split", true}};
  EXPECT_EQ(pre_tokenize(always, "Hey  friend"), (Strs{"\u2581Hey", "\u2581", "\u2581friend"}));
  json nosplit = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "never"}, {"split", false}};
  EXPECT_EQ(pre_tokenize(nosplit, "a b"), (Strs{"a\u2581b"}));
  // prepend_scheme "first" only prefixes the piece at the start of the input (not after an added token)
  json model = {{"type", "Unigram"},
                {"unk_id", 0},
                {"vocab", json::array({{"<unk>", 0.0}, {"a", -1.0}, {"\u2581a", -1.0}, {"<sep>", 0.0}})}};
  for (std::string scheme : {"first", "always"}) {
    auto t = make(model,
                  {{"added_tokens", {added(3, "<sep>", {{"special", true}})}},
                   {"pre_tokenizer",
                    {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", scheme}, {"split", true}}}});
    EXPECT_EQ(t.encode("a<sep>a"), scheme == "first" ? (Ids{2, 3, 1}) : (Ids{2, 3, 2})) << scheme;
  }
}

TEST(Normalizers, EachType) {
  EXPECT_EQ(normalize({{"type", "NFD"}}, "\u00e9"), "e\u0301");
  EXPECT_EQ(normalize({{"type", "NFC"}}, "e\u0301x"), "\u00e9x");
  EXPECT_EQ(normalize({{"type", "NFKC"}}, "\ufb01\uff21"), "fiA");
  EXPECT_EQ(normalize({{"type", "NFKD"}}, "\u00bd"), "1\u20442");
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "\u00c0B\u0391"), "\u00e0b\u03b1");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, " \u3000a "), "a ");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, "\t a \n"), "a");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}, "a b"), "a\u2581b");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}}, "a \t\n b"), "a b");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "\u2581"}}, "a"), "\u2581a");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "\u2581"}}, ""), "");
  EXPECT_EQ(normalize({{"type", "BertNormalizer"},
                       {"clean_text", true},
                       {"handle_chinese_chars", true},
                       {"strip_accents", nullptr},
                       {"lowercase", true}},
                      "H\u00e9llo\x01\t\u4e2d"),
            "hello  \u4e2d ");
  json seq = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFD"}}, {{"type", "Lowercase"}}})}};
  EXPECT_EQ(normalize(seq, "\u00c9"), "e\u0301");
  EXPECT_THROW(vlm::text::make_normalizer({{"type", "Nope"}}), vlm::Error);
}

TEST(AddedTokens, Flags) {
  json vocab = {{"a", 0}, {"b", 1}, {" ", 2}, {"<", 3}, {">", 4}, {"z", 5}};
  json toks = {added(10, "<x>", {{"lstrip", true}}), added(11, "<y>", {{"rstrip", true}}),
               added(12, "ab", {{"single_word", true}}), added(13, "<z>", {{"normalized", true}}),
               added(14, "<s>", {{"special", true}})};
  auto t = make(bpe_model(vocab, json::array()), {{"added_tokens", toks}, {"normalizer", {{"type", "Lowercase"}}}});
  EXPECT_EQ(t.encode("a <x>b"), (Ids{0, 10, 1}));  // lstrip eats the space before
  EXPECT_EQ(t.encode("a<y> b"), (Ids{0, 11, 1}));  // rstrip eats the space after
  EXPECT_EQ(t.encode(" ab "), (Ids{2, 12, 2}));    // single word: stands alone
  EXPECT_EQ(t.encode("aab"), (Ids{0, 0, 1}));      // inside a word: not matched
  EXPECT_EQ(t.encode("<Z>"), (Ids{13}));           // normalized token matches lower-cased text
  // the special "<s>" (normalized=false) never matches the lower-cased "<S>"; 's' has no id and no unk: dropped
  EXPECT_EQ(t.encode("<S>"), (Ids{3, 4}));
  EXPECT_EQ(t.encode("a<s>b"), (Ids{0, 14, 1}));
  EXPECT_EQ(t.decode({0, 14, 1}, false), "a <s> b");  // no decoder: tokens joined by spaces
  EXPECT_EQ(t.decode({0, 14, 1}, true), "a b");
  EXPECT_TRUE(t.is_special(14));
  EXPECT_FALSE(t.is_special(13));
  // a raw (normalized=false) token does not see normalized text, and the raw text "<S>" is not "<s>"
  auto lower = make(bpe_model({{"<", 0}, {">", 1}, {"s", 2}}, json::array()),
                    {{"added_tokens", {added(5, "<s>")}}, {"normalizer", {{"type", "Lowercase"}}}});
  EXPECT_EQ(lower.encode("<S>"), (Ids{0, 2, 1}));
  EXPECT_EQ(lower.encode("<s>"), (Ids{5}));
}

TEST(PostProcessors, TemplatesAndConfigOverride) {
  json vocab = {{"a", 0}, {"[CLS]", 1}, {"[SEP]", 2}, {"<s>", 3}, {"</s>", 4}};
  json tmpl = {{"type", "TemplateProcessing"},
               {"single", json::array({{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}},
                                       {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                       {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 0}}}}})},
               {"pair", json::array()},
               {"special_tokens",
                {{"[CLS]", {{"id", "[CLS]"}, {"ids", {1}}, {"tokens", {"[CLS]"}}}},
                 {"[SEP]", {{"id", "[SEP]"}, {"ids", {2}}, {"tokens", {"[SEP]"}}}}}}};
  auto t = make(bpe_model(vocab, json::array()), {{"post_processor", tmpl}});
  EXPECT_EQ(t.encode("a", true), (Ids{1, 0, 2}));
  EXPECT_EQ(t.encode("a", false), (Ids{0}));
  json seq = {{"type", "Sequence"},
              {"processors", json::array({{{"type", "ByteLevel"}, {"trim_offsets", false}}, tmpl})}};
  EXPECT_EQ(make(bpe_model(vocab, json::array()), {{"post_processor", seq}}).encode("a"), (Ids{1, 0, 2}));
  json roberta = {{"type", "RobertaProcessing"}, {"sep", {"</s>", 4}}, {"cls", {"<s>", 3}}};
  EXPECT_EQ(make(bpe_model(vocab, json::array()), {{"post_processor", roberta}}).encode("a"), (Ids{3, 0, 4}));
  json bert = {{"type", "BertProcessing"}, {"sep", {"[SEP]", 2}}, {"cls", {"[CLS]", 1}}};
  EXPECT_EQ(make(bpe_model(vocab, json::array()), {{"post_processor", bert}}).encode("a"), (Ids{1, 0, 2}));
  // Llama/Gemma classes: add_bos_token/add_eos_token from tokenizer_config.json replace the template.
  std::string cfg = R"({"tokenizer_class": "LlamaTokenizer", "add_bos_token": true, "add_eos_token": true,
                        "bos_token": "<s>", "eos_token": {"content": "</s>"}})";
  auto llama = make(bpe_model(vocab, json::array()), {{"post_processor", tmpl}}, cfg);
  EXPECT_EQ(llama.encode("a"), (Ids{3, 0, 4}));
  EXPECT_EQ(llama.bos_id(), 3);
  EXPECT_EQ(llama.eos_id(), 4);
  std::string nobos = R"({"tokenizer_class": "GemmaTokenizerFast", "add_bos_token": false, "bos_token": "<s>"})";
  EXPECT_EQ(make(bpe_model(vocab, json::array()), {{"post_processor", tmpl}}, nobos).encode("a"), (Ids{0}));
}

TEST(Decoders, EachType) {
  auto run = [](const json& cfg, std::vector<std::string> toks) {
    vlm::text::make_decoder(cfg)->apply(toks);
    std::string s;
    for (auto& t : toks) s += t;
    return s;
  };
  json fb = {{"type", "Sequence"}, {"decoders", json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}};
  EXPECT_EQ(run(fb, {"a", "<0xE4>", "<0xBD>", "<0xA0>", "b"}), "a\u4f60b");
  EXPECT_EQ(run(fb, {"<0xE4>", "<0xBD>", "x"}), "\ufffd\ufffdx");  // one U+FFFD per byte of a bad run
  EXPECT_EQ(run({{"type", "ByteLevel"}}, {"\u0120hi", "\u010a"}), " hi\n");
  EXPECT_EQ(run({{"type", "ByteLevel"}}, {"\u00e4\u00bd"}), "\ufffd");  // truncated UTF-8 -> lossy
  EXPECT_EQ(run({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}, {"  a", " b"}), " ab");
  EXPECT_EQ(run({{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}}, {"\u2581a", "\u2581b"}),
            " a b");
  EXPECT_EQ(run({{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}},
                {"\u2581Hey", "\u2581friend"}),
            "Hey friend");
  EXPECT_EQ(run({{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "never"}}, {"\u2581Hey"}),
            " Hey");
  EXPECT_EQ(run({{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}, {"un", "##aff", "##able", ","}),
            "unaffable,");
  EXPECT_EQ(run({{"type", "BPEDecoder"}, {"suffix", "</w>"}}, {"hel", "lo</w>", "world</w>"}), "hello world");
}

TEST(Robustness, MalformedInputsAreErrors) {
  EXPECT_THROW(vlm::Tokenizer::from_json("{\"model\": "), vlm::Error);
  EXPECT_THROW(vlm::Tokenizer::from_json("not json"), vlm::Error);
  EXPECT_THROW(make({{"type", "Mystery"}, {"vocab", json::object()}}), vlm::Error);
  EXPECT_THROW(make(bpe_model({{"a", 0}}, {"a"})), vlm::Error);  // merge without a space
  json bad_regex = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_THROW(make(bpe_model({{"a", 0}}, json::array()), {{"pre_tokenizer", bad_regex}}), vlm::Error);
}

TEST(Robustness, InvalidUtf8AndIds) {
  json vocab = {{"a", 0}, {"\ufffd", 1}};
  auto t = make(bpe_model(vocab, json::array()));
  EXPECT_EQ(t.encode("a\xff"
                     "a\xe4\xbd"),
            (Ids{0, 1, 0, 1}));                     // each maximal invalid subpart -> U+FFFD
  EXPECT_EQ(t.decode({0, 99, -5, 1}), "a \ufffd");  // unknown ids are dropped
}

}  // namespace

namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("vlm_tok_test_" + std::to_string(::getpid()) + "_" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path / name) << text; }
};

const char* kTinyJson = R"({"model": {"type": "BPE", "vocab": {"a": 0, "<s>": 1, "</s>": 2}, "merges": []},
  "added_tokens": [{"id": 1, "content": "<s>", "special": true}]})";

TEST(ChatTemplates, Sources) {
  TempDir d;
  d.write("tokenizer.json", kTinyJson);
  d.write("tokenizer_config.json",
          R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
              "eos_token": "</s>"})");
  auto t = vlm::Tokenizer::from_dir(d.path.string());
  EXPECT_EQ(t.chat_template(), "D");
  EXPECT_EQ(t.chat_template("tool_use"), "T");
  EXPECT_EQ(t.chat_template("missing"), "");
  EXPECT_EQ(t.eos_id(), 2);
  d.write("chat_template.json", R"({"chat_template": "J"})");
  EXPECT_EQ(vlm::Tokenizer::from_dir(d.path.string()).chat_template(), "J");
  d.write("chat_template.jinja", "K{{ x }}");
  EXPECT_EQ(vlm::Tokenizer::from_dir(d.path.string()).chat_template(), "K{{ x }}");
}

TEST(ChatTemplates, PointerFileAndExtras) {
  TempDir d;
  fs::create_directories(d.path / "real");
  d.write("real/tok.json", kTinyJson);
  d.write("tokenizer.json", "real/tok.json\n");  // a copied symlink that became a path-holding file
  d.write("special_tokens_map.json", R"({"bos_token": {"content": "<s>"}, "pad_token": "a"})");
  d.write("added_tokens.json", R"({"<extra>": 7})");
  auto t = vlm::Tokenizer::from_dir(d.path.string());
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.pad_id(), 0);
  EXPECT_EQ(t.token_to_id("<extra>"), 7);
  EXPECT_EQ(t.encode("a<extra>a"), (Ids{0, 7, 0}));
  EXPECT_EQ(t.vocab_size(), 8);
  EXPECT_TRUE(t.chat_template().empty());
}

}  // namespace
