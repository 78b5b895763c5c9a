// Tokenization models (BPE, WordPiece, Unigram): turn one pre-tokenized word into ids.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/json_file.h"
#include "text/json_scan.h"
#include "text/vocab.h"

namespace vlm::text {

class Model {
 public:
  virtual ~Model() = default;
  virtual void tokenize(std::string_view word, std::vector<int32_t>& out) const = 0;
  const Vocab& vocab() const { return vocab_; }

 protected:
  Vocab vocab_;
};

// The "model" object of tokenizer.json: small fields parsed as JSON, vocab/merges left as raw offsets
// into the scanner's text (npos when absent) and read with the fast scanner.
struct ModelSpec {
  json params = json::object();
  const JsonScanner* js = nullptr;
  size_t vocab_at = std::string::npos;
  size_t merges_at = std::string::npos;
};

std::unique_ptr<Model> make_model(const ModelSpec& spec);
std::unique_ptr<Model> make_bpe(const ModelSpec& spec);
std::unique_ptr<Model> make_wordpiece(const ModelSpec& spec);
std::unique_ptr<Model> make_unigram(const ModelSpec& spec);

// Reads a {"token": id, ...} object at `at` into `vocab`.
void read_vocab_object(const JsonScanner& js, size_t at, Vocab& vocab);
// "<0xNN>" byte-fallback piece name.
std::string byte_piece(uint8_t b);

}  // namespace vlm::text
