// Normalizers of tokenizer.json ("normalizer"): string -> string transforms applied before
// pre-tokenization. Offsets are not tracked (the library only needs ids).
#pragma once
#include <memory>
#include <string>

#include "io/json_file.h"

namespace vlm::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string s) const = 0;
};

// nullptr for a null/absent config; throws vlm::Error for an unsupported type.
std::unique_ptr<Normalizer> make_normalizer(const json& cfg);

}  // namespace vlm::text
