// Hugging Face `tokenizers`-compatible tokenizer loaded from tokenizer.json (+ tokenizer_config.json,
// special_tokens_map.json, added_tokens.json). encode() reproduces the Rust library's ids exactly.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vlm {

class Tokenizer {
 public:
  // Loads from a model directory (tokenizer.json required; the other files optional).
  static Tokenizer from_dir(const std::string& dir);
  // Loads from tokenizer.json text, with optional tokenizer_config.json text.
  static Tokenizer from_json(const std::string& tokenizer_json, const std::string& tokenizer_config_json = "");

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // Token strings as stored in the vocabulary (e.g. "Ġthe"), for display.
  std::string id_to_token(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  int32_t vocab_size() const;  // highest id + 1, added tokens included
  bool is_special(int32_t id) const;

  // From tokenizer_config.json / special_tokens_map.json (nullopt when absent).
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;
  std::string bos_token() const;  // "" when absent
  std::string eos_token() const;

  // The model's chat template(s): tokenizer_config.json "chat_template" (a string, or a list of
  // {name, template}), chat_template.json, or chat_template.jinja. Empty when none.
  // `name` selects a named template ("default" first, else the only one).
  std::string chat_template(const std::string& name = "") const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

// Turns generated ids into text incrementally. Text is emitted only at valid UTF-8 boundaries
// and with the same spacing as a full decode: the concatenation of everything push() and
// flush() return equals tokenizer.decode(all ids, skip_special_tokens).
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  std::string push(int32_t id);  // newly completed text (possibly empty)
  std::string flush();           // whatever is still held back
  void reset();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t emitted_bytes_ = 0;
};

}  // namespace vlm
