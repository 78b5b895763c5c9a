// Decoders of tokenizer.json ("decoder"): HF's decode_chain, token strings -> text pieces.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/json_file.h"

namespace vlm::text {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Decoder> make_decoder(const json& cfg);
// transformers' clean_up_tokenization (" ." -> "." etc.).
std::string clean_up_tokenization(std::string s);

}  // namespace vlm::text
