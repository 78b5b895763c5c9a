// Added tokens (tokenizer.json "added_tokens" + config extras): matched leftmost-longest before the model
// runs, honouring lstrip/rstrip/single_word; `normalized` tokens are matched on normalized text.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/vocab.h"

namespace vlm::text {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

struct Segment {
  size_t begin, end;  // byte range in the scanned text
  int32_t id;         // added-token id, or -1 for ordinary text
};

class AddedVocab {
 public:
  // Later additions of the same content or id replace earlier ones.
  void add(const AddedToken& t);
  // Builds the two matchers; `normalized_content` maps a token's content to its normalized form.
  template <typename F>
  void build(F normalize) {
    raw_ = Matcher();
    norm_ = Matcher();
    for (size_t k = 0; k < tokens_.size(); ++k) {
      const AddedToken& t = tokens_[k];
      if (t.content.empty()) continue;
      if (t.normalized)
        norm_.insert(normalize(t.content), static_cast<int32_t>(k));
      else
        raw_.insert(t.content, static_cast<int32_t>(k));
    }
  }
  // Splits `s` with the raw (normalized=false) or normalized token set.
  void split(std::string_view s, bool normalized_set, std::vector<Segment>& out) const;

  const AddedToken* by_id(int32_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &tokens_[it->second];
  }
  const AddedToken* by_content(std::string_view c) const {
    auto it = by_content_.find(std::string(c));
    return it == by_content_.end() ? nullptr : &tokens_[it->second];
  }
  int32_t max_id() const;
  bool empty() const { return tokens_.empty(); }

 private:
  struct Matcher {
    U64Map edges;                // node << 8 | byte -> child node
    std::vector<int32_t> token;  // node -> token index or -1
    bool first_byte[256] = {};
    Matcher() : token(1, -1) {}
    void insert(const std::string& s, int32_t tok);
    bool empty() const { return token.size() == 1; }
  };
  void scan(std::string_view s, const Matcher& m, std::vector<Segment>& out) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  Matcher raw_, norm_;
};

}  // namespace vlm::text
