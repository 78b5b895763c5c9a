// Internal state of vlm::Tokenizer: the HF pipeline stages plus config-derived extras.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "text/added_vocab.h"
#include "text/decoder.h"
#include "text/model.h"
#include "text/normalizer.h"
#include "text/pre_tokenizer.h"
#include "text/tokenizer.h"

namespace vlm {

struct Tokenizer::Impl {
  std::unique_ptr<text::Normalizer> normalizer;
  std::unique_ptr<text::PreTokenizer> pre_tokenizer;
  std::unique_ptr<text::Model> model;
  std::unique_ptr<text::Decoder> decoder;
  text::AddedVocab added;
  // Post-processing of a single sequence: ids put before and after it when special tokens are requested.
  std::vector<int32_t> post_prefix, post_suffix;

  std::string bos_token, eos_token, pad_token;
  bool clean_up_spaces = false;
  std::vector<std::pair<std::string, std::string>> chat_templates;  // (name, template)

  void encode_text(std::string_view text, size_t raw_offset, std::vector<int32_t>& out) const;
  std::optional<int32_t> lookup(std::string_view token) const;
};

// Raw file contents that make up a tokenizer ("" when a file is absent).
struct TokenizerFiles {
  std::string tokenizer_json, tokenizer_config, special_tokens_map, added_tokens, chat_template_json,
      chat_template_jinja;
};
std::shared_ptr<const Tokenizer::Impl> build_tokenizer(const TokenizerFiles& files);

}  // namespace vlm
