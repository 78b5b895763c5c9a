// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): split normalized text into words (and, for
// ByteLevel/Metaspace, rewrite their characters) before the model runs.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/json_file.h"

namespace vlm::text {

struct Piece {
  std::string text;
  size_t offset = 0;  // 0 only for the piece at the very start of the input (Metaspace "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their splits; empty pieces are dropped.
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& cfg);

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
// ((begin, end), is_match) ranges covering a string, as HF's Pattern::find_matches returns them.
using MatchList = std::vector<std::pair<std::pair<size_t, size_t>, bool>>;
MatchList ranges_to_matches(size_t size, const std::vector<std::pair<size_t, size_t>>& ranges);
// Applies a split behaviour (HF SplitDelimiterBehavior) and appends the non-empty parts of `piece`.
void split_piece(const Piece& piece, const MatchList& matches, SplitBehavior behavior, std::vector<Piece>& out);

}  // namespace vlm::text
